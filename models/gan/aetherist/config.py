"""Configs of the triplane GANs: Aetherist (ViT backbone) and EG3D (StyleGAN2 backbone), and the presets.

One dataclass serves both: `backbone` picks the network that turns the styles into triplanes; the
renderer, the super-resolution, the cameras and the discriminator are shared. The field names the
Aetherist seed documents use (`latent_dim`, `vit_dim`, `vit_layers`, `triplane_resolution`,
`triplane_channels`) are the config keys users type (also in a YAML `model:` section).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from utils.errors import UserError

__all__ = ["AetheristConfig", "PRESETS", "EG3D_PRESETS", "AETHERIST_PRESETS", "config_from_dict"]


@dataclass(frozen=True)
class AetheristConfig:
    """Architecture of a triplane GAN (generator and discriminator)."""

    backbone: str = "vit"
    """'vit' (Aetherist: a style-modulated Vision Transformer over a learned token grid) or 'stylegan2'
    (EG3D: a StyleGAN2 synthesis network whose 3 x C output channels are the three planes)."""
    latent_dim: int = 256
    """Size of the latent z."""
    w_dim: int = 512
    """Size of the intermediate latent w (the styles)."""
    c_dim: int = 25
    """Size of the camera label the mapping and the discriminator are conditioned on (16 + 9)."""
    mapping_layers: int = 2
    """Layers of the mapping network (EG3D uses 2)."""
    c_scale: float = 1.0
    """Multiplier of the camera label fed to the generator's mapping."""
    c_gen_conditioning_zero: bool = False
    """Zero the generator's camera conditioning (EG3D's --gen_pose_cond=False)."""
    triplane_resolution: int = 64
    """Side R of each feature plane (EG3D: 256, its backbone's output)."""
    triplane_channels: int = 32
    """Channels C of each plane."""
    vit_dim: int = 256
    """Width of the ViT tokens (backbone 'vit')."""
    vit_layers: int = 8
    """Transformer blocks of the ViT backbone."""
    vit_heads: int = 8
    """Attention heads of the ViT backbone."""
    vit_patch_size: int = 4
    """Each token covers vit_patch_size^2 texels of every plane (tokens: (R / patch)^2)."""
    vit_mlp_ratio: float = 4.0
    """Hidden width of the ViT MLPs, in units of vit_dim."""
    channel_base: int = 32768
    """StyleGAN2 backbone channels: min(channel_base / resolution, channel_max) (backbone 'stylegan2')."""
    channel_max: int = 512
    """StyleGAN2 backbone channel cap."""
    num_fp16_res: int = 0
    """StyleGAN2 backbone resolutions run in float16 on CUDA."""
    conv_clamp: float | None = None
    """Clamp of the backbone's convolution outputs (EG3D: 256 with float16 layers, else none)."""
    decoder_hidden: int = 64
    """Hidden width of the triplane MLP decoder."""
    decoder_output_dim: int = 32
    """Colour features the decoder outputs (the first three are RGB); the raw image has this many channels."""
    decoder_lr_mul: float = 1.0
    """Learning-rate multiplier of the decoder's equalized layers."""
    image_resolution: int = 512
    """Output image side (the super-resolution module's output)."""
    neural_rendering_resolution: int = 128
    """Side of the raw volume render (EG3D trains at 64 then 128)."""
    sr_module: str = "SuperresolutionHybrid8XDC"
    """EG3D's super-resolution module name (see superresolution.SR_MODULES)."""
    sr_channels: tuple[int, int] | None = None
    """Channels of the two super-resolution blocks when not the module's own (scaled variants: `tiny`)."""
    sr_num_fp16_res: int = 0
    """> 0: the super-resolution blocks run in float16 on CUDA with their outputs clamped to +-256 (EG3D's
    released networks: 4)."""
    sr_antialias: bool = True
    """Antialiased resizing of the raw image to the super-resolution input."""
    sr_noise_mode: str = "none"
    """Noise of the super-resolution layers: 'none' (EG3D's release) or 'random'."""
    depth_resolution: int = 48
    """Stratified samples per ray."""
    depth_resolution_importance: int = 48
    """Importance samples per ray (0: a single pass)."""
    ray_start: float | str = 2.25
    """Near distance of the samples, or 'auto' (the box's entry)."""
    ray_end: float | str = 3.3
    """Far distance, or 'auto' (the box's exit)."""
    box_warp: float = 1.0
    """Side of the cube the triplanes span, centred on the origin."""
    white_back: bool = False
    """Composite on white (ShapeNet) instead of black."""
    avg_camera_radius: float = 2.7
    """Default camera distance from the pivot (renders and turntables)."""
    avg_camera_pivot: tuple[float, float, float] = (0.0, 0.0, 0.2)
    """The point the default cameras look at."""
    fov_degrees: float = 18.837
    """Default field of view of the cameras."""
    fused_modconv_default: bool | str = "inference_only"
    """Grouped (fused) modulated convolutions: True, False, or 'inference_only' (EG3D's training setting)."""
    disc_channel_base: int = 32768
    """Discriminator channels: min(base / resolution, max)."""
    disc_channel_max: int = 512
    """Discriminator channel cap."""
    disc_num_fp16_res: int = 0
    """Discriminator resolutions run in float16 on CUDA (EG3D: 4, with conv_clamp 256)."""
    disc_conv_clamp: float | None = None
    """Clamp of the discriminator's convolution outputs."""
    disc_mbstd_group_size: int = 4
    """Minibatch-std group of the discriminator's epilogue."""
    disc_c_noise: float = 0.0
    """Std of the noise added to the discriminator's camera label in training (x the batch's std)."""
    disc_scales: tuple[int, ...] = ()
    """Extra input scales of Aetherist's multi-scale discriminator (e.g. (256, 128, 64)); () for EG3D's single
    dual discriminator."""
    disc_spectral_norm: bool = False
    """Spectral normalisation on the discriminator's layers (Aetherist); EG3D uses none."""

    def __post_init__(self) -> None:
        if self.backbone not in ("vit", "stylegan2"):
            raise UserError(f"backbone must be 'vit' or 'stylegan2', got {self.backbone!r}")
        if self.backbone == "vit" and self.triplane_resolution % self.vit_patch_size:
            raise UserError(f"triplane_resolution {self.triplane_resolution} is not a multiple of vit_patch_size "
                            f"{self.vit_patch_size}")
        if self.backbone == "vit" and self.vit_dim % self.vit_heads:
            raise UserError(f"vit_dim {self.vit_dim} is not divisible by vit_heads {self.vit_heads}")

    @property
    def triplane_features(self) -> int:
        return 3 * self.triplane_channels


def config_from_dict(values: Mapping[str, Any], base: AetheristConfig) -> AetheristConfig:
    """`base` with the keys of `values` (a YAML `model:` section) replaced; an unknown key is refused."""
    known = {f.name for f in fields(AetheristConfig)}
    aliases = {"triplane_res": "triplane_resolution", "triplane_dim": "triplane_channels"}
    out = {}
    for k, v in values.items():
        key = aliases.get(k, k)
        if key not in known:
            from utils.errors import did_you_mean
            raise UserError(f"unknown model config key '{k}': {did_you_mean(k, sorted(known))}")
        out[key] = tuple(v) if isinstance(v, list) else v
    return replace(base, **out)


ARCHITECTURE_FIELDS = ("backbone", "latent_dim", "w_dim", "c_dim", "mapping_layers", "triplane_resolution",
                       "triplane_channels", "vit_dim", "vit_layers", "vit_heads", "vit_patch_size", "vit_mlp_ratio",
                       "channel_base", "channel_max", "decoder_hidden", "decoder_output_dim", "image_resolution",
                       "sr_module", "sr_channels")
"""The fields that decide the generator's tensors (the others are rendering and training settings)."""

EG3D_FFHQ = AetheristConfig(backbone="stylegan2", latent_dim=512, triplane_resolution=256, image_resolution=512,
                            neural_rendering_resolution=128, sr_module="SuperresolutionHybrid8XDC",
                            avg_camera_pivot=(0.0, 0.0, 0.2), sr_num_fp16_res=4, disc_num_fp16_res=4,
                            disc_conv_clamp=256)
"""EG3D's FFHQ 512 network (ffhq512-128.pkl): rendering at 128, 8x super-resolution with doubled channels."""

EG3D_PRESETS: dict[str, AetheristConfig] = {
    "eg3d-ffhq-512": EG3D_FFHQ,
    "eg3d-afhqcats-512": replace(EG3D_FFHQ, avg_camera_pivot=(0.0, 0.0, -0.06)),
    "eg3d-shapenet-cars-128": replace(EG3D_FFHQ, image_resolution=128, neural_rendering_resolution=64,
                                      sr_module="SuperresolutionHybrid2X", depth_resolution=64,
                                      depth_resolution_importance=64, ray_start=0.1, ray_end=2.6, box_warp=1.6,
                                      white_back=True, avg_camera_radius=1.7, avg_camera_pivot=(0.0, 0.0, 0.0),
                                      c_gen_conditioning_zero=True),
}

AETHERIST_BASE = AetheristConfig(backbone="vit", latent_dim=256, w_dim=512, mapping_layers=8, vit_dim=256,
                                 vit_layers=8, vit_heads=8, vit_patch_size=4, triplane_resolution=64,
                                 triplane_channels=32, image_resolution=512, neural_rendering_resolution=128,
                                 sr_module="SuperresolutionHybrid8XDC", disc_channel_base=32768, disc_channel_max=192,
                                 disc_scales=(256, 128, 64), disc_spectral_norm=True)
"""The seed's sizes: latent 256, ViT 256 x 8, triplanes 3 x 32 x 64 x 64, 512 output."""

TINY = AetheristConfig(backbone="vit", latent_dim=32, w_dim=64, mapping_layers=2, vit_dim=32, vit_layers=2,
                       vit_heads=2, vit_patch_size=4, triplane_resolution=16, triplane_channels=8,
                       decoder_hidden=16, decoder_output_dim=8, image_resolution=64, neural_rendering_resolution=32,
                       sr_module="SuperresolutionHybrid2X", sr_channels=(16, 8), depth_resolution=8, depth_resolution_importance=8,
                       ray_start="auto", ray_end="auto", box_warp=1.0, avg_camera_pivot=(0.0, 0.0, 0.0),
                       disc_channel_base=256, disc_channel_max=32, disc_mbstd_group_size=2, disc_scales=(32,),
                       disc_spectral_norm=False)
"""A few-second CPU model for tests and the built-in dataset (64 px output from a 32 px render)."""

AETHERIST_PRESETS: dict[str, AetheristConfig] = {"aetherist-base": AETHERIST_BASE, "tiny": TINY}

PRESETS: dict[str, AetheristConfig] = {**AETHERIST_PRESETS, **EG3D_PRESETS}
