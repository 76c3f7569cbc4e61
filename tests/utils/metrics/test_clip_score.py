"""CLIP score: the stated formula through open_clip's own encoders; offline failure is one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from utils.metrics.clip_score import CLIPScorer
from utils.errors import UserError, WeightsError

import open_clip


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return CLIPScorer("RN50", pretrained=None, device="cpu", batch_size=2)


@pytest.mark.slow  # a 224 px ResNet-50 CLIP on CPU
def test_score_is_clamped_scaled_cosine(scorer):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]
    texts = ["a red fox", "a photo of a cat", "digits"]
    got = scorer.scores(images, texts)
    with torch.no_grad():
        fi = scorer.model.encode_image(torch.stack([scorer.preprocess(im) for im in images]))
        ft = scorer.model.encode_text(scorer.tokenizer(texts))
    fi, ft = fi / fi.norm(dim=-1, keepdim=True), ft / ft.norm(dim=-1, keepdim=True)
    expected = 100 * (fi * ft).sum(-1).clamp_min(0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert abs(scorer(images, texts) - float(expected.mean())) < 1e-4
    with pytest.raises(UserError):
        scorer.scores(images, texts[:2])


def test_offline_without_cache_is_one_line():
    with pytest.raises(WeightsError) as info:
        CLIPScorer("RN50", pretrained="openai")
    assert "\n" not in str(info.value) and "RN50/openai" in str(info.value)
    with pytest.raises(UserError):
        CLIPScorer("NoSuchNet")
