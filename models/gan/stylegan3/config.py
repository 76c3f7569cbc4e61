"""StyleGAN3 / StyleGAN2 architecture configs and the named presets of NVlabs' releases.

One frozen dataclass describes the generator and the discriminator of the three configs of NVlabs'
stylegan3 release: `stylegan3-t` (translation equivariant), `stylegan3-r` (also rotation: 1x1
convolutions, twice the channels, radial filters) and `stylegan2`. The numbers of each official
network are those of the release's train.py and docs/configs.md (the paper's settings); a loaded
.pkl brings its own (its pickled constructor arguments), so these presets name a network rather
than constrain it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

ARCHITECTURES = ("stylegan3-t", "stylegan3-r", "stylegan2")


@dataclass(frozen=True)
class StyleGANConfig:
    """A StyleGAN3-T/-R or StyleGAN2 generator and its discriminator (NVlabs' constructor arguments)."""

    architecture: str = "stylegan3-t"
    """'stylegan3-t', 'stylegan3-r' or 'stylegan2' (NVlabs' --cfg)."""
    image_size: int = 1024
    """Output resolution R (a power of two)."""
    channels: int = 3
    """Image channels (NVlabs' img_channels)."""
    num_classes: int = 0
    """Class-conditional: the size of the one-hot label c (NVlabs' c_dim); 0 is unconditional."""
    z_dim: int = 512
    """Size of the input latent z."""
    w_dim: int = 512
    """Size of the intermediate latent w."""
    mapping_layers: int = 2
    """Layers of the mapping network: 2 in StyleGAN3, 8 in StyleGAN2."""
    mapping_lr: float = 0.01
    """Learning-rate multiplier of the mapping layers."""
    w_avg_beta: float = 0.998
    """Decay of the tracked mean of w (the truncation centre)."""
    channel_base: int = 32768
    """Overall channel multiplier (channels = channel_base / (2 cutoff) in StyleGAN3, / resolution in StyleGAN2)."""
    channel_max: int = 512
    """Most channels of any layer."""
    conv_clamp: float | None = 256
    """Clamp of the layer outputs to +-conv_clamp (None: no clamp)."""
    num_fp16_res: int = 4
    """Layers at the N highest resolutions run in float16 on CUDA (0: all float32)."""
    # -- StyleGAN3 ----------------------------------------------------------------------------------
    num_layers: int = 14
    """StyleGAN3: synthesis layers, excluding the Fourier input and the ToRGB."""
    num_critical: int = 2
    """StyleGAN3: critically sampled layers at the end."""
    first_cutoff: float = 2.0
    """StyleGAN3: cutoff frequency f_c of the first layer."""
    first_stopband: float = 2 ** 2.1
    """StyleGAN3: minimum stopband f_t of the first layer."""
    last_stopband_rel: float = 2 ** 0.3
    """StyleGAN3: minimum stopband of the last layer, relative to its cutoff."""
    margin_size: int = 10
    """StyleGAN3: extra pixels computed around the image on each side."""
    output_scale: float = 0.25
    """StyleGAN3: scale of the output image."""
    conv_kernel: int = 3
    """StyleGAN3: convolution kernel (1 in config R)."""
    use_radial_filters: bool = False
    """StyleGAN3: radially symmetric downsampling filters (config R)."""
    filter_size: int = 6
    """StyleGAN3: low-pass taps relative to the lower of the two rates when resampling."""
    lrelu_upsampling: int = 2
    """StyleGAN3: sampling rate of the nonlinearity relative to the layer's."""
    magnitude_ema_beta: float = 0.999
    """StyleGAN3: decay of the tracked input magnitude of each layer (0.5 ** (batch / 20000) when training)."""
    # -- StyleGAN2 ----------------------------------------------------------------------------------
    synthesis_architecture: str = "skip"
    """StyleGAN2: 'skip' (the paper's), 'resnet' or 'orig' generator."""
    use_noise: bool = True
    """StyleGAN2: per-pixel noise inputs."""
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    """StyleGAN2 and the discriminator: the FIR filter of every 2x resampling."""
    # -- discriminator ------------------------------------------------------------------------------
    d_channel_base: int = 32768
    """Discriminator channel multiplier (channels = d_channel_base / resolution)."""
    d_channel_max: int = 512
    """Most channels of any discriminator layer."""
    mbstd_group_size: int = 4
    """Images per group of the minibatch standard deviation."""
    mbstd_num_channels: int = 1
    """Feature maps the minibatch standard deviation adds."""
    d_architecture: str = "resnet"
    """'resnet' (the paper's), 'skip' or 'orig' discriminator."""
    class_names: tuple[str, ...] = field(default=())
    """Names of the classes, index = label (optional)."""

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")

    @property
    def is_stylegan3(self) -> bool:
        return self.architecture != "stylegan2"

    @property
    def num_ws(self) -> int:
        """How many w the synthesis network takes."""
        if self.is_stylegan3:
            return self.num_layers + 2
        return 2 * (self.image_size.bit_length() - 1) - 2


def for_architecture(config: StyleGANConfig, architecture: str) -> StyleGANConfig:
    """`config` retargeted to another of the three configs at the same size, with NVlabs' train.py defaults
    for what the config sets (mapping depth, channels, kernels, filters)."""
    base = replace(config, architecture=architecture)
    if architecture == config.architecture:
        return config
    cbase = config.channel_base // (2 if config.architecture == "stylegan3-r" else 1)
    cmax = config.channel_max // (2 if config.architecture == "stylegan3-r" else 1)
    if architecture == "stylegan2":
        return replace(base, mapping_layers=8, channel_base=cbase, channel_max=cmax, conv_kernel=3,
                       use_radial_filters=False)
    r = architecture == "stylegan3-r"
    return replace(base, mapping_layers=2, channel_base=cbase * (2 if r else 1), channel_max=cmax * (2 if r else 1),
                   conv_kernel=1 if r else 3, use_radial_filters=r)


def _sg3(kind: str, size: int, channel_base: int = 32768) -> StyleGANConfig:
    r = kind == "r"
    return StyleGANConfig(architecture=f"stylegan3-{kind}", image_size=size, mapping_layers=2,
                          channel_base=channel_base * (2 if r else 1), channel_max=1024 if r else 512,
                          conv_kernel=1 if r else 3, use_radial_filters=r,
                          magnitude_ema_beta=0.5 ** (32 / 20000), d_channel_base=channel_base)


def _sg2(size: int, channel_base: int = 32768, mbstd: int = 4) -> StyleGANConfig:
    return StyleGANConfig(architecture="stylegan2", image_size=size, mapping_layers=8, channel_base=channel_base,
                          d_channel_base=channel_base, mbstd_group_size=mbstd)


# The official networks (NVlabs' NGC releases: stylegan3/versions/1 and stylegan2/versions/1), named
# <config>-<dataset>-<resolution>; FFHQ-U and MetFaces-U are the unaligned versions of the datasets.
OFFICIAL: dict[str, StyleGANConfig] = {
    **{f"stylegan3-{k}-{d}-1024": _sg3(k, 1024) for k in "tr" for d in ("ffhq", "ffhqu", "metfaces", "metfacesu")},
    **{f"stylegan3-{k}-ffhqu-256": _sg3(k, 256, channel_base=16384) for k in "tr"},
    **{f"stylegan3-{k}-afhqv2-512": _sg3(k, 512) for k in "tr"},
    **{f"stylegan2-{d}-1024": _sg2(1024) for d in ("ffhq", "ffhqu", "metfaces", "metfacesu")},
    "stylegan2-ffhqu-256": _sg2(256, channel_base=16384, mbstd=8),
    "stylegan2-afhqv2-512": _sg2(512),
}

# Small networks of each config, random unless trained (tests, CPU training on digits).
TINY = StyleGANConfig(architecture="stylegan3-t", image_size=32, z_dim=32, w_dim=32, mapping_layers=2,
                      channel_base=512, channel_max=32, num_layers=4, d_channel_base=256, d_channel_max=32,
                      mbstd_group_size=4)
SMALL: dict[str, StyleGANConfig] = {
    "tiny": TINY,
    "tiny-r": for_architecture(TINY, "stylegan3-r"),
    "tiny-stylegan2": replace(for_architecture(TINY, "stylegan2"), channel_base=256, mapping_layers=4),
}

PRESETS: dict[str, StyleGANConfig] = {**OFFICIAL, **SMALL}

__all__ = ["ARCHITECTURES", "OFFICIAL", "PRESETS", "SMALL", "StyleGANConfig", "TINY", "for_architecture"]
