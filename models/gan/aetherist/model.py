"""The triplane generator (EG3D's TriPlaneGenerator layout) and the dual discriminator.

`TriplaneGenerator`: z and the camera label -> `mapping` -> ws -> backbone (StyleGAN2 synthesis for
EG3D, the ViT for Aetherist) -> three C-channel planes -> `renderer` along the label's camera rays with
the `decoder` MLP -> raw feature image (its first three channels RGB) and depth -> `superresolution`
-> the image. Module names are EG3D's (`backbone.mapping`, `backbone.synthesis`, `decoder.net`,
`superresolution.block0/1`), so its pickled state dicts load as they are.

`DualDiscriminator`: EG3D's dual discrimination: the raw render, resized (bilinear, antialiased) to the
image's size, is concatenated with the image (6 channels) and judged by a camera-conditioned StyleGAN2
ResNet discriminator (the shared `utils.nn.stylegan` one). Aetherist's variant adds input scales
(`disc_scales`, one more dual discriminator per scale, logits averaged) and spectral normalisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.gan.aetherist.config import AetheristConfig
from models.gan.aetherist.renderer import OSGDecoder, TriplaneRenderer
from models.gan.aetherist.superresolution import SuperResolution
from models.gan.aetherist.vit_backbone import ViTBackbone
from utils.nn.stylegan import MappingNetwork, StyleGAN2Discriminator, StyleGAN2Synthesis
from utils.rendering.camera_labels import split_camera_label

__all__ = ["Backbone", "TriplaneGenerator", "DualDiscriminator", "AetheristDiscriminator", "filtered_resize",
           "spectral_normalize"]


class Backbone(nn.Module):
    """`mapping` (z, c -> ws) and `synthesis` (ws -> 3 * C channel planes), as NVlabs' Generator holds them."""

    def __init__(self, config: AetheristConfig):
        super().__init__()
        cfg = config
        if cfg.backbone == "stylegan2":
            self.synthesis = StyleGAN2Synthesis(cfg.w_dim, cfg.triplane_resolution, cfg.triplane_features,
                                                channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                                num_fp16_res=cfg.num_fp16_res, conv_clamp=cfg.conv_clamp,
                                                fused_modconv_default=cfg.fused_modconv_default)
        else:
            self.synthesis = ViTBackbone(cfg.w_dim, cfg.triplane_resolution, cfg.triplane_channels, cfg.vit_dim,
                                         cfg.vit_layers, cfg.vit_heads, cfg.vit_patch_size, cfg.vit_mlp_ratio)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.latent_dim, cfg.c_dim, cfg.w_dim, num_ws=self.num_ws,
                                      num_layers=cfg.mapping_layers)


class TriplaneGenerator(nn.Module):
    """z (B, latent_dim), camera labels c (B, 25) -> {'image', 'image_raw', 'image_depth'} (and more)."""

    def __init__(self, config: AetheristConfig):
        super().__init__()
        cfg = self.config = config
        self.z_dim, self.c_dim, self.w_dim = cfg.latent_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution = cfg.image_resolution
        self.neural_rendering_resolution = cfg.neural_rendering_resolution
        self.backbone = Backbone(cfg)
        self.num_ws = self.backbone.num_ws
        self.renderer = TriplaneRenderer(cfg.depth_resolution, cfg.depth_resolution_importance, cfg.ray_start,
                                         cfg.ray_end, cfg.box_warp, white_back=cfg.white_back)
        self.decoder = OSGDecoder(cfg.triplane_channels, cfg.decoder_hidden, cfg.decoder_output_dim,
                                  lr_multiplier=cfg.decoder_lr_mul)
        self.superresolution = SuperResolution(cfg.sr_module, cfg.decoder_output_dim, cfg.w_dim,
                                               antialias=cfg.sr_antialias,
                                               fused_modconv_default=cfg.fused_modconv_default,
                                               img_resolution=cfg.image_resolution, block_channels=cfg.sr_channels,
                                               num_fp16_res=cfg.sr_num_fp16_res)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.z_dim,)

    def mapping(self, z: Tensor, c: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                update_emas: bool = False) -> Tensor:
        if self.config.c_gen_conditioning_zero:
            c = torch.zeros_like(c)
        return self.backbone.mapping(z, c * self.config.c_scale, truncation_psi=truncation_psi,
                                     truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def planes(self, ws: Tensor, noise_mode: str = "const", noise_generator: torch.Generator | None = None) -> Tensor:
        """Triplanes (B, 3, C, R, R)."""
        kw = {} if self.config.backbone == "vit" else dict(noise_mode=noise_mode, noise_generator=noise_generator)
        planes = self.backbone.synthesis(ws, **kw)
        return planes.reshape(len(planes), 3, self.config.triplane_channels, planes.shape[-2], planes.shape[-1])

    def render(self, planes: Tensor, c: Tensor, resolution: int, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor, Tensor]:
        """(raw features (B, F, r, r) in [-1, 1], depth (B, 1, r, r), opacity (B, 1, r, r)) from camera labels."""
        split_camera_label(c)
        origins, dirs = self.renderer.rays(c, resolution)
        feats, depth, opacity = self.renderer(planes, self.decoder, origins, dirs, generator)
        B = planes.shape[0]
        to_image = lambda t: t.permute(0, 2, 1).reshape(B, t.shape[-1], resolution, resolution)  # noqa: E731
        return to_image(feats).contiguous(), to_image(depth), to_image(opacity)

    def synthesis(self, ws: Tensor, c: Tensor, neural_rendering_resolution: int | None = None,
                  noise_mode: str = "const", generator: torch.Generator | None = None,
                  noise_generator: torch.Generator | None = None, planes: Tensor | None = None) -> dict[str, Tensor]:
        """EG3D's synthesis: `generator` draws the ray jitter and importance samples (None: torch's global
        generator), `noise_generator` the backbone's noise when noise_mode is 'random'."""
        res = neural_rendering_resolution or self.neural_rendering_resolution
        if planes is None:
            planes = self.planes(ws, noise_mode, noise_generator)
        feats, depth, opacity = self.render(planes, c, res, generator)
        rgb = feats[:, :3]
        image = self.superresolution(rgb, feats, ws, noise_mode=self.config.sr_noise_mode,
                                     noise_generator=noise_generator)
        return {"image": image, "image_raw": rgb, "image_depth": depth, "image_features": feats,
                "image_opacity": opacity, "planes": planes}

    def sample_mixed(self, coordinates: Tensor, directions: Tensor, ws: Tensor, noise_mode: str = "const",
                     planes: Tensor | None = None) -> dict[str, Tensor]:
        """Density and colour features at world points (B, N, 3) (for meshes and density regularisation)."""
        if planes is None:
            planes = self.planes(ws, noise_mode)
        return self.renderer.run_model(planes, self.decoder, coordinates, directions)

    def forward(self, z: Tensor, c: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                neural_rendering_resolution: int | None = None, update_emas: bool = False,
                noise_mode: str = "const", generator: torch.Generator | None = None) -> dict[str, Tensor]:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas)
        out = self.synthesis(ws, c, neural_rendering_resolution, noise_mode, generator)
        out["ws"] = ws
        return out


def filtered_resize(image: Tensor, size: int) -> Tensor:
    """EG3D's 'antialiased' filtered resizing of the raw image to the discriminator's size."""
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class DualDiscriminator(StyleGAN2Discriminator):
    """{'image': (B, 3, R, R), 'image_raw': (B, 3, r, r)} and camera labels (B, 25) -> logits (B, 1)."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, conv_clamp: float | None = None,
                 mbstd_group_size: int = 4, disc_c_noise: float = 0.0):
        super().__init__(c_dim, img_resolution, img_channels * 2, channel_base=channel_base,
                         channel_max=channel_max, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp,
                         epilogue_kwargs={"mbstd_group_size": mbstd_group_size})
        self.disc_c_noise = disc_c_noise
        self.register_buffer("resample_filter", torch.tensor([[1., 3, 3, 1]]).T @ torch.tensor([[1., 3, 3, 1]]) / 64)

    def forward(self, img: dict[str, Tensor], c: Tensor | None = None, generator: torch.Generator | None = None,
                force_fp32: bool = False) -> Tensor:
        size = self.img_resolution
        image = img["image"]
        if image.shape[-1] != size:
            image = filtered_resize(image, size)
        x = torch.cat([image, filtered_resize(img["image_raw"], size)], 1)
        if c is not None and self.training and self.disc_c_noise > 0:
            noise = torch.randn(c.shape, generator=generator, device=generator.device if generator else c.device)
            c = c + noise.to(c.device) * c.std(0) * self.disc_c_noise
        return super().forward(x, c, force_fp32=force_fp32)


class _UndoGain(nn.Module):
    """A parametrization multiplying a weight by 1 / (the layer's run-time gain)."""

    def __init__(self, gain: float):
        super().__init__()
        self.inverse = 1.0 / gain

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.inverse


def spectral_normalize(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every equalized layer of `module`: the effective weight
    (stored weight x run-time gain) becomes W / sigma_max(W), one power iteration per training call (torch's
    parametrization), so each layer is 1-Lipschitz; without undoing the equalized gain the two scalings
    would compound and the activations vanish through the layers."""
    from torch.nn.utils.parametrizations import spectral_norm
    from torch.nn.utils.parametrize import register_parametrization

    from utils.nn.stylegan import Conv2dLayer, FullyConnectedLayer

    for m in list(module.modules()):
        if isinstance(m, (Conv2dLayer, FullyConnectedLayer)) and not hasattr(m, "parametrizations"):
            spectral_norm(m)
            register_parametrization(m, "weight", _UndoGain(m.weight_gain))
    return module


class AetheristDiscriminator(nn.Module):
    """Aetherist's multi-scale dual discriminator: `main` at the image size (EG3D's, same names under
    `main.`) and one more per extra scale (`scales.{i}`); logits averaged over scales."""

    def __init__(self, config: AetheristConfig):
        super().__init__()
        cfg = config
        kw = dict(channel_base=cfg.disc_channel_base, channel_max=cfg.disc_channel_max,
                  num_fp16_res=cfg.disc_num_fp16_res, conv_clamp=cfg.disc_conv_clamp,
                  mbstd_group_size=cfg.disc_mbstd_group_size, disc_c_noise=cfg.disc_c_noise)
        self.main = DualDiscriminator(cfg.c_dim, cfg.image_resolution, **kw)
        self.scales = nn.ModuleList(DualDiscriminator(cfg.c_dim, s, **kw) for s in cfg.disc_scales)
        if cfg.disc_spectral_norm:
            spectral_normalize(self)
        from utils.gan.ada import AugmentPipe

        self.augment = AugmentPipe.bgc()  # ADA's pipeline and its p (used when training with --aug ada)

    def forward(self, img: dict[str, Tensor], c: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        logits = [self.main(img, c, generator)] + [d(img, c, generator) for d in self.scales]
        return torch.stack(logits).mean(0)
