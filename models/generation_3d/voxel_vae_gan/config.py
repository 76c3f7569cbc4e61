"""Architecture and training configuration of the multi-view 3D-VAE-GAN, and its YAML config files.

The YAML keys are those of the seed project's config/pose.yaml: n_epochs, batch_size, z_size,
cube_len, image_size, obj, num_views, combine_type, use_pose, g_lr, e_lr, d_lr, recon_weight,
kl_weight_start, kl_weight_end; the others in `TrainConfig` and `VoxelVAEGANConfig` may be set too.
`--config config/pose.yaml` reads that file when it exists where the command runs, else the copy
shipped in this package's configs/ folder (matched by file name), so the seed's command line runs
from the repository root as written.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from utils.errors import UserError, did_you_mean

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
COMBINE_TYPES = ("mean", "max")


@dataclass(frozen=True)
class VoxelVAEGANConfig:
    """The networks: a 2D view encoder (+ pose encoder), a 3D generator and a 3D discriminator."""

    z_size: int = 200
    """Latent vector dimension."""
    cube_len: int = 64
    """Voxel grid resolution (a power of two, 8 or more: 32 and 64 are the usual ones)."""
    image_size: int = 128
    """Input views are resized to image_size x image_size (a power of two, 8 or more)."""
    use_pose: bool = False
    """Join an embedding of each view's camera pose to its image features."""
    pose_dim: int = 12
    """Length of the pose vector (utils.data.co3d.cameras.pose_vector: R and the camera direction)."""
    pose_embed: int = 64
    """Width of the pose embedding."""
    enc_channels: int = 64
    """Channels of the encoder's first convolution (doubled per stride-2 layer, up to enc_max)."""
    enc_max: int = 512
    """Most channels of an encoder layer."""
    enc_hidden: int = 512
    """Width of the layer between the image (+ pose) features and (mu, logvar)."""
    gen_channels: int = 512
    """Channels of the generator's 4^3 grid (halved per upsampling, down to gen_min)."""
    gen_min: int = 32
    """Fewest channels of a generator layer."""
    disc_channels: int = 64
    """Channels of the discriminator's first convolution (doubled per layer, up to disc_max)."""
    disc_max: int = 512
    """Most channels of a discriminator layer."""
    leak: float = 0.2
    """Negative slope of the LeakyReLUs of the encoder and discriminator."""

    def check(self) -> "VoxelVAEGANConfig":
        for key in ("cube_len", "image_size"):
            v = getattr(self, key)
            if v < 8 or v & (v - 1):
                raise UserError(f"{key} must be a power of two, 8 or more (32 and 64 are usual), got {v}")
        if self.z_size < 1:
            raise UserError(f"z_size must be positive, got {self.z_size}")
        return self


PRESETS: dict[str, VoxelVAEGANConfig] = {
    # Wu et al. 2016: 64^3 voxels, z of 200, generator 512-256-128-64 channels
    "default": VoxelVAEGANConfig(),
    # config/pose.yaml: 32^3 voxels from 64 px views with pose encoding, sized to train on a CPU
    "pose": VoxelVAEGANConfig(z_size=128, cube_len=32, image_size=64, use_pose=True, enc_channels=16,
                              enc_max=128, enc_hidden=256, gen_channels=128, gen_min=16, disc_channels=16,
                              disc_max=128),
    # tests: 16^3 from 32 px views
    "tiny": VoxelVAEGANConfig(z_size=16, cube_len=16, image_size=32, use_pose=False, pose_embed=8, enc_channels=8,
                              enc_max=32, enc_hidden=32, gen_channels=32, gen_min=8, disc_channels=8, disc_max=32),
}


def get_config(preset: str) -> VoxelVAEGANConfig:
    if preset not in PRESETS:
        raise UserError(f"voxel_vae_gan has no preset '{preset}': {did_you_mean(preset, PRESETS)}")
    return PRESETS[preset]


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains (the seed's keys first)."""

    n_epochs: int = 100
    """Number of training epochs (a resumed run trains up to this epoch)."""
    batch_size: int = 8
    """Objects per step."""
    obj: str = "chair"
    """Object category: the subfolder of --input_dir used when --input_dir is its parent."""
    num_views: int = 4
    """Views per object: each step draws this many frames of each sequence."""
    combine_type: str = "mean"
    """How the per-view codes (mu, logvar) are fused: 'mean' or 'max'."""
    g_lr: float = 2.5e-3
    """Generator learning rate."""
    e_lr: float = 1e-4
    """Encoder learning rate."""
    d_lr: float = 1e-5
    """Discriminator learning rate."""
    recon_weight: float = 100.0
    """Weight of the voxel reconstruction loss (weighted BCE, mean over voxels)."""
    kl_weight_start: float = 0.0
    """KL weight at the first step; it rises linearly to kl_weight_end at the last."""
    kl_weight_end: float = 0.01
    """KL weight at the last step."""
    adv_weight: float = 1.0
    """Weight of the generator's adversarial loss."""
    recon_pos_weight: float = 0.85
    """Weight of occupied voxels in the reconstruction BCE (empty ones get 1 - this), against sparsity."""
    d_thresh: float = 0.8
    """The discriminator is updated only while its accuracy on the step's batch is below this (Wu et al.)."""
    beta1: float = 0.5
    """Adam beta1 of the three optimisers."""
    beta2: float = 0.999
    """Adam beta2 of the three optimisers."""
    seed: int = 0
    """Seed of the initial weights, the data order, the views drawn and every step's noise."""
    save_every: int = 10
    """Epochs between checkpoints/epoch_N folders (the last epoch is always saved)."""
    vis_every: int = 1
    """Epochs between visualisations/epoch_N.png panels (0: none)."""
    mixed_precision: str = "no"
    """accelerate's mixed precision: 'no', 'fp16' or 'bf16'."""

    def check(self) -> "TrainConfig":
        if self.combine_type not in COMBINE_TYPES:
            raise UserError(f"--combine_type must be 'mean' or 'max', got '{self.combine_type}'")
        if self.num_views < 1:
            raise UserError(f"--num_views must be 1 or more, got {self.num_views}")
        if self.n_epochs < 1 or self.batch_size < 1:
            raise UserError(f"--n_epochs and --batch_size must be positive, got {self.n_epochs} and {self.batch_size}")
        for key in ("g_lr", "e_lr", "d_lr"):
            if getattr(self, key) <= 0:
                raise UserError(f"{key} must be positive, got {getattr(self, key)}")
        if not 0 < self.recon_pos_weight < 1:
            raise UserError(f"recon_pos_weight must be in (0, 1), got {self.recon_pos_weight}")
        if self.save_every < 1:
            raise UserError(f"save_every must be 1 or more, got {self.save_every}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"mixed_precision must be no, fp16 or bf16, got '{self.mixed_precision}'")
        return self


MODEL_KEYS = tuple(f.name for f in fields(VoxelVAEGANConfig))
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
SEED_KEYS = ("n_epochs", "batch_size", "z_size", "cube_len", "image_size", "obj", "num_views", "combine_type",
             "use_pose", "g_lr", "e_lr", "d_lr", "recon_weight", "kl_weight_start", "kl_weight_end")
"""The keys of the seed project's YAML files."""


def resolve_config_path(path: str | Path) -> Path:
    """`path` when it exists; else the shipped config of that file name (config/pose.yaml -> configs/pose.yaml)."""
    p = Path(path)
    if p.is_file():
        return p
    for name in (p.name, f"{p.name}.yaml"):
        if (CONFIG_DIR / name).is_file():
            return CONFIG_DIR / name
    shipped = sorted(q.name for q in CONFIG_DIR.glob("*.yaml"))
    raise UserError(f"config file '{path}' not found (nor a shipped config of that name: {', '.join(shipped)})")


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """The keys of a YAML config file, checked against the known ones; `preset` names the base architecture."""
    import yaml

    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config file {p} is not valid YAML ({' '.join(str(err).split())[:100]})") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must map keys to values (key: value lines)")
    known = set(MODEL_KEYS) | set(TRAIN_KEYS) | {"preset"}
    unknown = [k for k in data if k not in known]
    if unknown:
        raise UserError(f"config file {p}: unknown key '{unknown[0]}' ({did_you_mean(unknown[0], known)})")
    return data


def build_configs(values: dict[str, Any], preset: str | None = None) -> tuple[VoxelVAEGANConfig, TrainConfig]:
    """The model and training configs from a preset and key values (a YAML file's, then command-line overrides)."""
    base = get_config(preset or values.get("preset") or "pose")
    model_kw = {k: v for k, v in values.items() if k in MODEL_KEYS and v is not None}
    train_kw = {k: v for k, v in values.items() if k in TRAIN_KEYS and v is not None}
    try:
        model = replace(base, **{k: type(getattr(base, k))(v) for k, v in model_kw.items()})
        defaults = TrainConfig()
        train = replace(defaults, **{k: type(getattr(defaults, k))(v) for k, v in train_kw.items()})
    except (TypeError, ValueError) as err:
        raise UserError(f"a config value has the wrong type ({err})") from None
    return model.check(), train.check()


def to_dict(config) -> dict[str, Any]:
    return asdict(config)


def parse_bool(text: str | bool) -> bool:
    """'True'/'False' (and yes/no, 1/0) as the seed's `--use_pose True` takes them."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    import argparse

    raise argparse.ArgumentTypeError(f"expected True or False, got '{text}'")
