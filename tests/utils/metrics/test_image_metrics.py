"""PSNR and SSIM against torchmetrics."""
from __future__ import annotations

import warnings

import pytest
import torch

from utils.metrics.image_metrics import psnr, ssim
from utils.errors import UserError

warnings.filterwarnings("ignore", category=FutureWarning)
import torchmetrics.functional.image as tm


def _pair(seed=0, shape=(3, 3, 48, 41), scale=1.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g) * scale
    b = (a + 0.1 * scale * torch.randn(shape, generator=g)).clamp(0, scale)
    return a, b


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_psnr_matches_torchmetrics(data_range):
    a, b = _pair(scale=data_range)
    ref = tm.peak_signal_noise_ratio(a, b, data_range=data_range, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(psnr(a, b, data_range), ref, atol=1e-4, rtol=0)


def test_psnr_identical_is_inf():
    a, _ = _pair()
    assert torch.isinf(psnr(a, a)).all()


@pytest.mark.parametrize("data_range,channels", [(1.0, 3), (2.0, 1), (255.0, 3)])
def test_ssim_matches_torchmetrics(data_range, channels):
    a, b = _pair(shape=(2, channels, 40, 52), scale=data_range)
    ref = tm.structural_similarity_index_measure(a, b, data_range=data_range, reduction="none")
    torch.testing.assert_close(ssim(a, b, data_range), ref, atol=1e-5, rtol=0)


def test_ssim_valid_and_zero_padding():
    a, b = _pair()
    # valid = the reflect result cropped to the interior
    full = ssim(a, a, padding="valid")
    torch.testing.assert_close(full, torch.ones(3), atol=1e-6, rtol=0)
    v, z = ssim(a, b, padding="valid"), ssim(a, b, padding="zeros")
    assert v.shape == z.shape == (3,) and not torch.allclose(v, z)


def test_ssim_double_precision_and_errors():
    a, b = _pair()
    torch.testing.assert_close(ssim(a.double(), b.double()).float(), ssim(a, b), atol=1e-5, rtol=0)
    with pytest.raises(UserError):
        ssim(a, b[:, :, :10])
    with pytest.raises(UserError):
        psnr(a[0], b[0])
