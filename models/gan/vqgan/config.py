"""Configuration of VQGAN (taming-transformers' VQModel): autoencoder, quantizer, loss."""
from __future__ import annotations

from dataclasses import dataclass, field

from models.gan.vqgan.spec import SPEC
from utils.nn.conv_autoencoder import TrunkConfig


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
    """Encoder/decoder widths are `ch * ch_mult[i]`; each level but the last halves the resolution.
    Names follow taming-transformers' yaml (`ddconfig`)."""

    ch: int = 128
    """Width of the full-resolution level."""
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    """Level widths as multiples of ch."""
    num_res_blocks: int = 2
    """ResNet blocks per encoder level (the decoder has one more)."""
    attn_resolutions: tuple[int, ...] = (16,)
    """Feature-map sides (at the training resolution) whose levels get attention after every block."""
    resolution: int = 256
    """The training resolution; only used to place attention (levels whose size is in attn_resolutions)
    and as the default size of random code grids."""
    in_channels: int = 3
    """Image channels."""
    out_channels: int = 3
    """Channels of the decoded image."""
    z_channels: int = 256
    """Channels of the encoder output and the decoder input (around the 1x1 quant convs)."""
    embed_dim: int = 256
    """Width of each codebook vector."""
    n_embed: int = 1024
    """Number of codebook vectors."""
    beta: float = 0.25
    """Weight of one term of the quantiser loss (see legacy)."""
    legacy: bool = True
    """True: taming's original loss, beta on the codebook term; False: the corrected VQ-VAE loss,
    beta on the commitment (encoder) term."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights: 32 in taming's releases)."""
    dropout: float = 0.0
    """Dropout inside the ResNet blocks (training only)."""
    loss: VQGANLossConfig = field(default_factory=VQGANLossConfig)
    """The training loss (not stored in the autoencoder's weights)."""

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def attn_levels(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.ch_mult)) if self.resolution // 2 ** i in self.attn_resolutions)

    @property
    def trunk(self) -> TrunkConfig:
        """The encoder/decoder sizes (the shared conv autoencoder trunk; the encoder writes z_channels)."""
        return TrunkConfig(in_channels=self.in_channels, out_channels=self.out_channels, base_channels=self.ch,
                           channel_mult=self.ch_mult, num_res_blocks=self.num_res_blocks, z_channels=self.z_channels,
                           double_z=False, attn_levels=self.attn_levels, norm_groups=self.norm_groups,
                           dropout=self.dropout)


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
