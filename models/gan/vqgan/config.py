"""Configuration of VQGAN (taming-transformers' VQModel): autoencoder, quantizer, loss."""
from __future__ import annotations

from dataclasses import dataclass, field

from models.gan.vqgan.spec import SPEC


@dataclass(frozen=True)
class VQGANLossConfig:
    """VQLPIPSWithDiscriminator of taming-transformers: L1 + LPIPS, codebook loss, hinge PatchGAN."""

    disc_start: int = 0
    """Global step from which the adversarial terms count (before it their factor is 0)."""
    disc_weight: float = 1.0
    """Multiplies the adaptive weight of the generator's adversarial loss."""
    disc_factor: float = 1.0
    codebook_weight: float = 1.0
    perceptual_weight: float = 1.0
    disc_loss: str = "hinge"
    """'hinge' or 'vanilla' (softplus) discriminator loss."""
    disc_num_layers: int = 3
    disc_ndf: int = 64
    disc_in_channels: int = 3


@dataclass(frozen=True)
class VQGANConfig:
    """Encoder/decoder widths are `ch * ch_mult[i]`; each level but the last halves the resolution."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resolution: int = 256
    """The training resolution; only used to place attention (levels whose size is in attn_resolutions)."""
    in_channels: int = 3
    out_channels: int = 3
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 1024
    beta: float = 0.25
    legacy: bool = True
    """True: taming's original loss, beta on the codebook term; False: the corrected VQ-VAE loss,
    beta on the commitment (encoder) term."""
    norm_groups: int = 32
    dropout: float = 0.0
    loss: VQGANLossConfig = field(default_factory=VQGANLossConfig)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def attn_levels(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.ch_mult)) if self.resolution // 2 ** i in self.attn_resolutions)


PRESETS: dict[str, VQGANConfig] = {
    # configs/imagenet_vqgan.yaml of taming-transformers (vqgan_imagenet_f16_1024)
    "imagenet-f16-1024": VQGANConfig(n_embed=1024, loss=VQGANLossConfig(disc_start=250001, disc_weight=0.8)),
    # the config shipped with vqgan_imagenet_f16_16384
    "imagenet-f16-16384": VQGANConfig(n_embed=16384, loss=VQGANLossConfig(disc_start=0, disc_weight=0.75,
                                                                           disc_num_layers=2)),
    "tiny": VQGANConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32,
                        z_channels=8, embed_dim=4, n_embed=16, norm_groups=8,
                        loss=VQGANLossConfig(disc_num_layers=2, disc_ndf=8)),
}


def preset(name: str) -> VQGANConfig:
    return PRESETS[SPEC.check_preset(name)]
