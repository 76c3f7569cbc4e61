"""Anti-aliasing (Mip-Splatting's 2D filter, gsplat's `antialiased` mode): a scene trained with the
filter and rendered at half and at double its training resolution carries less aliasing energy
(spectral power above half the Nyquist frequency) than the same scene trained without it."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from benchmarks.gaussian_splatting import make_scene
from models.generation_3d.gaussian_splatting.config import TrainConfig, get_config
from models.generation_3d.gaussian_splatting.strategy import make_strategy
from models.generation_3d.gaussian_splatting.training import Trainer
from utils.data.nerf_synthetic import load_nerf_synthetic


def high_frequency_power(images: torch.Tensor) -> float:
    """Mean spectral power (per pixel, per channel) above 0.25 cycles/pixel of (N, H, W, 3) images."""
    x = images.permute(0, 3, 1, 2).double()
    x = x - x.mean((-1, -2), keepdim=True)
    power = torch.fft.fft2(x).abs() ** 2 / (x.shape[-1] * x.shape[-2])
    fy = torch.fft.fftfreq(x.shape[-2]).abs()[:, None]
    fx = torch.fft.fftfreq(x.shape[-1]).abs()[None]
    return float(power[..., torch.maximum(fx, fy) > 0.25].mean())


def test_high_frequency_power_measures_detail():
    flat = torch.full((1, 16, 16, 3), 0.5)
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2).float()[None, ..., None].expand(1, 16, 16, 3)
    assert high_frequency_power(flat) == 0.0 and high_frequency_power(checker) > 0.2


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = make_scene(str(tmp_path_factory.mktemp("still_life")), n_train=16, n_test=4, size=32)
    return load_nerf_synthetic(root, "train"), load_nerf_synthetic(root, "test")


def _trained(train, test, antialiased: bool, steps: int = 300) -> Trainer:
    base = get_config("tiny")
    cfg = replace(base, init_num_points=1500, raster=replace(base.raster, antialiased=antialiased, backend="numba"))
    trainer = Trainer(cfg, TrainConfig(steps=steps, seed=0).scaled_to(steps),
                      make_strategy("default", steps, max_gaussians=4000), train, test, "unused",
                      torch.device("cpu"), tensorboard=False)
    for step in range(steps):
        trainer.train_step(step)
        trainer.step = step + 1
    return trainer


@pytest.mark.slow  # two 300-step trainings: ~50 s on the loaded 2-core machine (the fast suite checks the
# filter's images and gradients against the reference in tests/utils/rendering/test_gaussian_rasterizer_numba.py)
def test_the_filter_lowers_aliasing_energy_at_half_and_double_resolution(scene):
    train, test = scene
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        classic, filtered = _trained(train, test, False), _trained(train, test, True)
    finally:
        torch.set_num_threads(threads)
    # both fit the views (the filter is not winning by rendering nothing)
    for t in (classic, filtered):
        assert t.evaluate()["psnr"] > 19.0
    for factor in (0.5, 2.0):
        cams = test.cameras.scaled(factor)
        hf_classic = high_frequency_power(classic.render_views(cams))
        hf_filtered = high_frequency_power(filtered.render_views(cams))
        assert hf_filtered < 0.8 * hf_classic, factor
