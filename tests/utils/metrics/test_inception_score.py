"""Inception Score against torch-fidelity: the split arithmetic, and the network's bias-free logits
with its TF-1.x resize on the same random weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.metrics.inception import resize_299
from utils.metrics.inception_score import LogitsExtractor, inception_score
from utils.errors import UserError

import torch_fidelity.metric_isc as fidelity_isc


@pytest.mark.parametrize("n,splits,shuffle", [(100, 10, True), (37, 4, False), (50, 1, True)])
def test_score_matches_torch_fidelity(n, splits, shuffle):
    logits = torch.from_numpy(np.random.default_rng(n).normal(scale=3, size=(n, 1008)))
    ref = fidelity_isc.isc_features_to_metric(logits, splits=splits, shuffle=shuffle, rng_seed=2020)
    mean, std = inception_score(logits.numpy(), splits, shuffle, 2020)
    assert abs(mean - ref["inception_score_mean"]) < 1e-9
    assert abs(std - ref["inception_score_std"]) < 1e-9


def test_score_bounds():
    uniform = np.zeros((20, 1008))
    assert abs(inception_score(uniform, 2)[0] - 1.0) < 1e-12
    confident = np.full((1008, 1008), -50.0)
    np.fill_diagonal(confident, 50.0)  # every class once, each predicted with certainty
    assert abs(inception_score(confident, 1)[0] - 1008) < 1e-6
    with pytest.raises(UserError):
        inception_score(uniform, 30)


def test_tf_resize_matches_torch_fidelity():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.rand(2, 3, 32, 45) * 255
    ref = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    torch.testing.assert_close(resize_299(x, "tf"), ref, atol=1e-3, rtol=0)


@pytest.mark.slow  # two full 299 x 299 Inception passes
def test_logits_match_torch_fidelity(tmp_path, make_inception):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = make_inception(resize="tf")
    path = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    ref = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(path))
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    with torch.no_grad():
        pool, logits = ref(images)
    ours = LogitsExtractor(weights=path, device="cpu", batch_size=2, progress=False)
    got = ours.logits(images.float() / 255)
    np.testing.assert_allclose(got, logits.double().numpy(), atol=1e-4, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(net.fuse()(images.float() / 255), pool, atol=1e-4, rtol=0)
