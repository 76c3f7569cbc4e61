"""Configuration of the radiance fields: architecture presets and training recipes.

A preset names a method and its architecture as published; a recipe says how big and how long:

- "paper": the published sizes and schedules (what `train_3d.py` uses on CUDA);
- "cpu": smaller networks and a schedule of a few minutes on two CPU cores at the built-in
  scene's 64 x 64 images (what `train_3d.py` uses on CPU).

The scene box, near/far and background come from the data and are filled in by the trainer
(`dataclasses.replace`); a checkpoint stores the full config, so what it was trained with is
what it loads with.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from models.generation_3d.nerf.spec import SPEC
from utils.errors import UserError

__all__ = ["NeRFConfig", "TrainConfig", "PRESETS", "RECIPES", "METHODS", "get_config", "train_config"]

METHODS = ("vanilla", "mipnerf", "instant-ngp", "nerfacto")
RECIPES = ("paper", "cpu")


@dataclass(frozen=True)
class NeRFConfig:
    """One radiance-field model: which method, its networks and its samplers."""

    method: str = "instant-ngp"
    """vanilla (Mildenhall et al. 2020), mipnerf (Barron et al. 2021), instant-ngp (Mueller et al.
    2022) or nerfacto (nerfstudio, Tancik et al. 2023)."""

    # -- the scene (set from the data by the trainer) ------------------------------------------
    aabb: tuple[float, float, float, float, float, float] = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
    """Scene box xmin ymin zmin xmax ymax zmax, world units (after the scene normalisation)."""
    near: float = 0.05
    """Nearest distance sampled along a ray (rays also start where they enter the box)."""
    far: float = 1000.0
    """Farthest distance sampled (rays also stop where they leave the box, unless `unbounded`)."""
    unbounded: bool = False
    """Space outside the box is contracted into it (nerfacto) or covered by grid cascades
    (instant-ngp): for real, unbounded captures."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Background colour behind the field (white for NeRF-synthetic)."""

    # -- vanilla and mip-NeRF MLPs --------------------------------------------------------------
    pos_max_deg: int = 10
    """Frequencies of the position encoding, 2^0 .. 2^(deg-1) (NeRF: 10; mip-NeRF IPE: 16)."""
    dir_max_deg: int = 4
    """Frequencies of the view-direction encoding (both papers: 4)."""
    mlp_width: int = 256
    """Width of the trunk MLP."""
    mlp_depth: int = 8
    """Layers of the trunk MLP."""
    skip_layer: int = 4
    """The trunk layer whose input is concatenated with the encoded position again."""
    color_width: int = 128
    """Width of the view-dependent colour layer."""
    num_coarse: int = 64
    """Samples per ray of the first pass (NeRF: 64 stratified; mip-NeRF: 128)."""
    num_fine: int = 128
    """Samples per ray of the second pass (NeRF: 128 more, taken with the first 64; mip-NeRF: 128 resampled)."""
    resample_padding: float = 0.01
    """mip-NeRF: weight added to the blurred weights before resampling."""

    # -- hash-grid fields (instant-ngp, nerfacto) ---------------------------------------------------
    hash_levels: int = 16
    """L, levels of the hash grid."""
    hash_features: int = 2
    """F, features per level."""
    hash_log2_size: int = 19
    """log2 T, table entries per level."""
    hash_base_res: int = 16
    """N_min, the coarsest resolution."""
    hash_max_res: int = 2048
    """N_max, the finest resolution."""
    hash_backend: str = "auto"
    """torch, tcnn (tiny-cuda-nn on CUDA), or auto (tcnn when installed on CUDA)."""
    hidden_dim: int = 64
    """Width of the density MLP."""
    geo_feat_dim: int = 15
    """Features passed from the density MLP to the colour MLP."""
    color_hidden: int = 64
    """Width of the colour MLP."""
    color_layers: int = 2
    """Hidden layers of the colour MLP."""
    sh_degree: int = 3
    """Spherical-harmonics degree of the direction encoding (3: 16 features)."""
    appearance_dim: int = 0
    """Per-image appearance embedding size (nerfacto: 32; 0: none)."""

    # -- occupancy grid (instant-ngp) -----------------------------------------------------------------
    grid_resolution: int = 128
    """Cells per side of the occupancy grid."""
    grid_levels: int = 1
    """Cascades of the grid (4 for unbounded scenes)."""
    render_steps: int = 1024
    """Marching steps across the box diagonal: step size = diagonal / render_steps."""
    cone_angle: float = 0.0
    """Step growth with distance (dt = max(step, t * cone_angle)); 1/256 for unbounded scenes."""
    alpha_thre: float = 0.0
    """Samples with opacity below this are skipped (1e-2 for unbounded scenes)."""
    early_stop_eps: float = 1e-4
    """A ray stops once its transmittance falls below this."""
    grid_update_every: int = 16
    """Refresh the occupancy grid every this many steps."""
    grid_warmup: int = 256
    """Steps during which every cell is re-evaluated at each refresh."""
    occ_thre: float = 0.01
    """Occupancy (density x step) above which a cell is marked occupied."""

    # -- proposal sampling (nerfacto) -----------------------------------------------------------------
    num_proposal_samples: tuple[int, ...] = (256, 96)
    """Samples of each proposal pass."""
    num_nerf_samples: int = 48
    """Samples of the final pass through the field."""
    proposal_levels: int = 5
    """Hash levels of each proposal density network."""
    proposal_max_res: tuple[int, ...] = (128, 256)
    """Finest hash resolution of each proposal network."""
    proposal_log2_size: int = 17
    """log2 table size of the proposal networks."""
    proposal_hidden: int = 16
    """Width of the proposal networks' MLP."""
    spacing: str = "uniform_disparity"
    """Spacing of the first proposal samples: linear, disparity or uniform_disparity."""
    anneal_steps: int = 1000
    """Proposal-weight annealing reaches 1 after this many steps."""
    interlevel_mult: float = 1.0
    """Weight of the interlevel (proposal) loss."""
    distortion_mult: float = 0.002
    """Weight of the distortion loss."""
    pose_refinement: bool = False
    """Learn a per-image SO(3) x R^3 correction of the training poses (nerfacto)."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown NeRF method '{self.method}': use one of {', '.join(METHODS)}")

    @property
    def step_size(self) -> float:
        lo, hi = self.aabb[:3], self.aabb[3:]
        diag = sum((b - a) ** 2 for a, b in zip(lo, hi)) ** 0.5
        return diag / self.render_steps


_VANILLA = NeRFConfig(method="vanilla", pos_max_deg=10, dir_max_deg=4, num_coarse=64, num_fine=128)
_MIPNERF = NeRFConfig(method="mipnerf", pos_max_deg=16, dir_max_deg=4, num_coarse=128, num_fine=128)
_NGP = NeRFConfig(method="instant-ngp")
_NERFACTO = NeRFConfig(method="nerfacto", appearance_dim=32, pose_refinement=True, unbounded=True)

PRESETS: dict[str, NeRFConfig] = {
    "vanilla": _VANILLA,
    "mipnerf": _MIPNERF,
    "instant-ngp": _NGP,
    "nerfacto": _NERFACTO,
    # random weights for tests and the facade: a small instant-ngp
    "tiny": replace(_NGP, hash_levels=4, hash_log2_size=12, hash_max_res=64, hidden_dim=16, color_hidden=16,
                    color_layers=1, grid_resolution=16, render_steps=128),
}

# The "cpu" recipe's architecture: what fits a few minutes on two cores at 64 x 64 pixels.
_CPU_MODEL = {
    "vanilla": dict(mlp_width=128, mlp_depth=4, skip_layer=2, color_width=64, num_coarse=32, num_fine=32),
    "mipnerf": dict(mlp_width=128, mlp_depth=4, skip_layer=2, color_width=64, num_coarse=48, num_fine=48),
    "instant-ngp": dict(hash_levels=8, hash_log2_size=17, hash_max_res=256, grid_resolution=64,
                        render_steps=384, grid_update_every=16, grid_warmup=32),
    "nerfacto": dict(hash_levels=8, hash_log2_size=17, hash_max_res=256, num_proposal_samples=(64, 32),
                     num_nerf_samples=24, proposal_levels=4, proposal_max_res=(64, 128), proposal_log2_size=15,
                     anneal_steps=200),
}


def get_config(preset: str | None, recipe: str = "paper") -> NeRFConfig:
    """The architecture of `preset` (default instant-ngp) at `recipe` size."""
    name = SPEC.check_preset(preset)
    if recipe not in RECIPES:
        raise UserError(f"unknown recipe '{recipe}': use paper or cpu")
    cfg = PRESETS[name]
    if recipe == "cpu" and name != "tiny":
        cfg = replace(cfg, **_CPU_MODEL[cfg.method])
    return cfg


@dataclass(frozen=True)
class TrainConfig:
    """How a radiance field is optimised."""

    steps: int = 20_000
    """Optimisation steps."""
    rays: int = 4096
    """Rays per step (the first step's, when `target_samples` adapts it)."""
    target_samples: int = 0
    """Instant-NGP: adapt the rays per step so each step evaluates about this many samples (0: fixed)."""
    max_rays: int = 1 << 16
    """Upper bound of the adapted rays per step."""
    lr: float = 1e-2
    """Peak learning rate of the fields."""
    lr_final: float = 1e-4
    """Learning rate reached at `decay_steps` (exp and loglinear schedules)."""
    schedule: str = "exp"
    """exp (exponential decay), loglinear (mip-NeRF: log-linear with a delayed start) or multistep
    (Instant-NGP/nerfacc: x0.33 at 1/2, 3/4 and 9/10 of the run)."""
    decay_steps: int = 0
    """Steps over which exp/loglinear decay from lr to lr_final (0: the run's length)."""
    warmup_steps: int = 0
    """Linear warm-up (multistep) or delayed start (loglinear) from warmup_mult x lr."""
    warmup_mult: float = 0.01
    """Learning-rate factor at step 0 of the warm-up."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    eps: float = 1e-8
    """Adam epsilon (1e-15 for hash grids, as in Instant-NGP)."""
    weight_decay: float = 0.0
    """L2 weight decay of the MLPs (not of the hash tables)."""
    coarse_loss_mult: float = 1.0
    """Weight of the first pass's colour loss (vanilla 1, mip-NeRF 0.1)."""
    camera_lr: float = 1e-3
    """Learning rate of the pose corrections (nerfacto)."""
    camera_lr_final: float = 1e-4
    """Final learning rate of the pose corrections, reached at camera_decay_steps."""
    camera_decay_steps: int = 5000
    """Steps of the pose-correction decay."""
    seed: int = 0
    """Seed of the initialisation and of every step's randomness (resume is exact)."""

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiple of `lr` at `step`."""
        import math

        t_total = self.decay_steps or self.steps
        if self.schedule == "multistep":
            warm = min(1.0, self.warmup_mult + (1 - self.warmup_mult) * step / self.warmup_steps) \
                if self.warmup_steps else 1.0
            drops = sum(step >= int(self.steps * f) for f in (0.5, 0.75, 0.9))
            return warm * 0.33 ** drops
        frac = min(max(step / max(t_total, 1), 0.0), 1.0)
        factor = math.exp(frac * math.log(self.lr_final / self.lr))
        if self.schedule == "loglinear" and self.warmup_steps:
            factor *= self.warmup_mult + (1 - self.warmup_mult) * math.sin(
                0.5 * math.pi * min(max(step / self.warmup_steps, 0.0), 1.0))
        return factor


_TRAIN: dict[tuple[str, str], TrainConfig] = {
    # Mildenhall et al.: 4096 rays, Adam 5e-4 decaying to 5e-5, a few hundred thousand steps
    ("vanilla", "paper"): TrainConfig(steps=200_000, rays=4096, lr=5e-4, lr_final=5e-5, schedule="exp"),
    ("vanilla", "cpu"): TrainConfig(steps=1500, rays=1024, lr=1e-3, lr_final=1e-4, schedule="exp"),
    # Barron et al.: 1M steps, 4096 rays, log-linear 5e-4 -> 5e-6 after a 2500-step delay, coarse x0.1
    ("mipnerf", "paper"): TrainConfig(steps=1_000_000, rays=4096, lr=5e-4, lr_final=5e-6, schedule="loglinear",
                                      warmup_steps=2500, warmup_mult=0.01, coarse_loss_mult=0.1),
    ("mipnerf", "cpu"): TrainConfig(steps=1500, rays=1024, lr=1e-3, lr_final=1e-4, schedule="loglinear",
                                    warmup_steps=50, warmup_mult=0.01, coarse_loss_mult=0.1),
    # Instant-NGP as nerfacc's example trains it: 20k steps, 2^18 samples per step, Adam 1e-2
    # (betas 0.9/0.99, eps 1e-15, decay 1e-6), x0.33 at 1/2, 3/4, 9/10 after 100 warm-up steps
    ("instant-ngp", "paper"): TrainConfig(steps=20_000, rays=1024, target_samples=1 << 18, lr=1e-2,
                                          schedule="multistep", warmup_steps=100, betas=(0.9, 0.99), eps=1e-15,
                                          weight_decay=1e-6),
    ("instant-ngp", "cpu"): TrainConfig(steps=600, rays=256, target_samples=1 << 13, max_rays=4096, lr=1e-2,
                                        schedule="multistep", warmup_steps=30, betas=(0.9, 0.99), eps=1e-15,
                                        weight_decay=1e-6),
    # nerfstudio's nerfacto: 30k steps, 4096 rays, Adam 1e-2 (eps 1e-15) decaying towards 1e-4 over
    # 200k steps; pose corrections 1e-3 -> 1e-4 over 5k
    ("nerfacto", "paper"): TrainConfig(steps=30_000, rays=4096, lr=1e-2, lr_final=1e-4, decay_steps=200_000,
                                       schedule="exp", eps=1e-15),
    ("nerfacto", "cpu"): TrainConfig(steps=1500, rays=1024, lr=1e-2, lr_final=1e-3, schedule="exp", eps=1e-15,
                                     camera_decay_steps=1500),
}


def train_config(preset: str | None, recipe: str = "paper") -> TrainConfig:
    """The training recipe of `preset` (tiny trains with instant-ngp's cpu recipe)."""
    cfg = get_config(preset, recipe)
    return _TRAIN[(cfg.method, "cpu" if SPEC.check_preset(preset) == "tiny" else recipe)]
