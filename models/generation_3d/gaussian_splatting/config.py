"""Configuration of 3D Gaussian splatting: the scene representation and the training recipe."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from models.generation_3d.gaussian_splatting.spec import SPEC
from utils.rendering.splatting import RasterConfig

__all__ = ["GaussianSplattingConfig", "TrainConfig", "PRESETS", "get_config"]

REFERENCE_STEPS = 30_000
"""Length of the original recipe; schedules are given for it and scaled to shorter runs."""


@dataclass(frozen=True)
class GaussianSplattingConfig:
    """The splat representation and how it is initialised and rendered."""

    sh_degree: int = 3
    """Highest spherical-harmonics degree of the colours (0..3); 16 coefficients per channel at 3."""
    init_num_points: int = 100_000
    """Random initial Gaussians when the data has no point cloud (NeRF-synthetic)."""
    init_extent: float = 1.3
    """Half side of the cube, centred on the scene, that random initial points fill (scene units)."""
    init_opacity: float = 0.1
    """Opacity of every initial Gaussian."""
    init_scale: float = 1.0
    """Initial scale = this x the mean distance to the 3 nearest initial neighbours."""
    raster: RasterConfig = field(default_factory=RasterConfig)
    """Rasterizer settings (tile size, eps2d, near/far planes, backend)."""


PRESETS: dict[str, GaussianSplattingConfig] = {
    # the original recipe (Kerbl et al. 2023) for NeRF-synthetic scenes
    "default": GaussianSplattingConfig(),
    # few random Gaussians: tests, and the built-in scene on a CPU
    "tiny": GaussianSplattingConfig(sh_degree=3, init_num_points=3_000, init_scale=0.5),
}


def get_config(preset: str | None) -> GaussianSplattingConfig:
    return PRESETS[SPEC.check_preset(preset)]


@dataclass(frozen=True)
class TrainConfig:
    """The 3DGS optimisation recipe. Step counts refer to a run of `steps` iterations; the defaults
    are the paper's for 30k steps and `scaled_to(steps)` shrinks them proportionally."""

    steps: int = REFERENCE_STEPS
    """Optimisation steps (one training view each)."""
    means_lr: float = 1.6e-4
    """Initial position learning rate, times the scene extent."""
    means_lr_final: float = 1.6e-6
    """Final position learning rate (times the extent), reached by exponential decay at `steps`."""
    scales_lr: float = 5e-3
    """Learning rate of the log scales."""
    quats_lr: float = 1e-3
    """Learning rate of the rotations (unnormalised quaternions)."""
    opacities_lr: float = 5e-2
    """Learning rate of the opacity logits."""
    sh0_lr: float = 2.5e-3
    """Learning rate of the DC colour coefficients."""
    shN_lr: float = 2.5e-3 / 20
    """Learning rate of the higher SH coefficients (20x smaller than DC, as in the paper)."""
    lambda_dssim: float = 0.2
    """Loss = (1 - lambda) L1 + lambda (1 - SSIM)."""
    sh_degree_interval: int = 1000
    """Raise the active SH degree by one every this many steps, up to the model's degree."""
    batch_size: int = 1
    """Training views per step."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour composited behind the Gaussians (white for NeRF-synthetic)."""
    seed: int = 0
    """Seed of the initialisation and of every step's randomness (resume is exact)."""

    def scaled_to(self, steps: int) -> "TrainConfig":
        """The same recipe for a run of `steps`: step-counted schedules shrink in proportion."""
        f = steps / REFERENCE_STEPS
        return replace(self, steps=steps, sh_degree_interval=max(1, round(self.sh_degree_interval * f)))
