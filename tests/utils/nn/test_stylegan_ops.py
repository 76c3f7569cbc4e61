"""The StyleGAN ops (utils/nn/stylegan) against NVlabs' reference implementations, through golden fixtures.

tests/fixtures/stylegan3/make_fixtures.py ran NVlabs' stylegan3 ops (their pure-PyTorch 'ref' paths) on
seeded random inputs; ours must give the same outputs (max abs diff <= 1e-4 in float32), and our fast
forms must agree with our step-by-step definitions.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from utils.nn.stylegan.bias_act import bias_act
from utils.nn.stylegan.conv import (conv2d_resample, conv2d_resample_reference, modulated_conv2d,
                                    modulated_conv2d_normalized)
from utils.nn.stylegan.filtered_lrelu import (design_lowpass_filter, filtered_lrelu_fast,
                                              filtered_lrelu_reference)
from utils.nn.stylegan.upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "stylegan3"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "nvlabs_ops.safetensors")


def close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= tol, (a - b).abs().max().item()


def test_setup_filter_matches_the_release(ref):
    close(setup_filter([1, 3, 3, 1]), ref["f4"], 1e-7)
    assert setup_filter([1, 3, 3, 1]).ndim == 2 and setup_filter(list(range(1, 9))).ndim == 1


@pytest.mark.parametrize("name,f,kw", [
    ("a", "f4", dict(up=2, padding=[2, 1, 2, 1])), ("b", "f4", dict(down=2, padding=[1, 1, 1, 1])),
    ("c", "f12", dict(up=3, down=2, padding=[3, -1, 2, 0], flip_filter=True, gain=2.0)),
    ("d", "f5x5", dict(padding=2)), ("e", "f12", dict(up=[2, 1], down=[1, 2], padding=[5, 6, 2, 3]))])
def test_upfirdn2d_matches_the_release(ref, name, f, kw):
    close(upfirdn2d(ref["x"], ref[f], **kw), ref[f"upfirdn_{name}"])


def test_resampling_helpers_match_the_release(ref):
    close(upsample2d(ref["x"], ref["f4"]), ref["up2d"])
    close(downsample2d(ref["x"], ref["f12"], padding=1), ref["down2d"])
    close(filter2d(ref["x"], ref["f5x5"]), ref["filter2d"])


@pytest.mark.parametrize("name,k,up,down,groups,flip", [
    ("up3", 3, 2, 1, 1, False), ("down3", 3, 1, 2, 1, True), ("up1", 1, 2, 1, 1, False),
    ("down1", 1, 1, 2, 1, True), ("grp", 3, 2, 1, 2, False), ("plain", 3, 1, 1, 1, True)])
def test_conv2d_resample_matches_the_release_and_its_definition(ref, name, k, up, down, groups, flip):
    args = (ref["xc"], ref[f"w_{name}"], ref["f4"], up, down, k // 2, groups, flip)
    close(conv2d_resample(*args), ref[f"conv_{name}"])
    close(conv2d_resample_reference(*args), ref[f"conv_{name}"])


def test_bias_act_matches_the_release(ref):
    close(bias_act(ref["x"], ref["ba_b"], act="lrelu", gain=1.7, clamp=0.8), ref["bias_act"])
    close(bias_act(ref["x"], None, act="tanh"), ref["bias_act_tanh"])


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_the_release(ref, fused):
    out = modulated_conv2d(ref["xc"], ref["mc_weight"], ref["styles"], noise=ref["mc_noise"], up=2, padding=1,
                           resample_filter=ref["f4"], flip_weight=False, fused_modconv=fused)
    close(out, ref[f"modconv_up_{int(fused)}"])
    close(modulated_conv2d(ref["xc"], ref["mc_weight"], ref["styles"], padding=1, demodulate=False),
          ref["modconv_nodemod"])


def test_stylegan3_modulated_conv_matches_the_release(ref):
    close(modulated_conv2d_normalized(ref["xc"], ref["mc_weight"], ref["styles"], padding=2, input_gain=ref["gain"]),
          ref["modconv3"])


def test_kaiser_and_jinc_filter_designs_match_the_release(ref):
    close(design_lowpass_filter(12, 4.0, 5.0, 32), ref["kaiser_a"], 1e-7)
    close(design_lowpass_filter(24, 11.3, 9.1, 64), ref["kaiser_b"], 1e-7)
    close(design_lowpass_filter(12, 4.0, 5.0, 32, radial=True), ref["jinc_a"], 1e-7)
    assert design_lowpass_filter(1, 4.0, 5.0, 32) is None


@pytest.mark.parametrize("impl", [filtered_lrelu_reference, filtered_lrelu_fast], ids=["reference", "fast"])
def test_filtered_lrelu_matches_the_release(ref, impl):
    x, b = ref["xl"], ref["fl_b"]
    close(impl(x, ref["kaiser_a"], ref["kaiser_a"], b, 2, 2, [8, 7, 8, 7], math.sqrt(2), 0.2, 1.5), ref["fl_sep"])
    close(impl(x, ref["kaiser_b"], None, b, 4, 1, [13, 10, 11, 12]), ref["fl_up4"])
    close(impl(x, ref["kaiser_a"], ref["jinc_a"], b, 2, 2, [9, 8, 9, 8], flip_filter=True), ref["fl_radial"])


def test_fast_filtered_lrelu_handles_crops_and_wide_pads():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 12, 14, generator=g)
    f = design_lowpass_filter(12, 3.0, 4.0, 24)
    for pad in ([-2, 3, 14, -1], [20, 0, 0, 20], [5, 5, 5, 5]):
        for up, down in ((2, 1), (2, 2), (4, 2), (3, 1)):
            a = filtered_lrelu_reference(x, f, f, None, up, down, pad, clamp=0.3)
            close(filtered_lrelu_fast(x, f, f, None, up, down, pad, clamp=0.3), a, 1e-5)


def test_fast_conv2d_resample_equals_its_definition_with_gradients():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 6, generator=g, requires_grad=True)
    w = torch.randn(3, 4, 3, 3, generator=g)
    f = setup_filter([1, 3, 3, 1])
    for up, down, flip in ((2, 1, False), (1, 2, True), (2, 2, False)):
        a = conv2d_resample(x, w, f, up, down, 1, flip_weight=flip)
        b = conv2d_resample_reference(x, w, f, up, down, 1, flip_weight=flip)
        close(a, b, 1e-5)
        (ga,) = torch.autograd.grad(a.square().sum(), x)
        (gb,) = torch.autograd.grad(b.square().sum(), x)
        close(ga, gb, 1e-4)
