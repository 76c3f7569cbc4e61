"""Configuration of BigGAN-deep: one frozen dataclass for the generator, one for the discriminator."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models.gan.biggan.spec import SPEC

# Each generator block is (upsample?, input width, output width); widths are multiples of `ch`.
# These are the layer lists of the DeepMind BigGAN-deep TF Hub modules (as ported by
# pytorch-pretrained-biggan): two blocks per resolution, the second of each pair upsamples.
_LAYERS_128 = ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
               (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1))
_LAYERS_256 = ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
               (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
               (False, 2, 2), (True, 2, 1))
_LAYERS_512 = _LAYERS_256 + ((False, 1, 1), (True, 1, 1))


@dataclass(frozen=True)
class BigGANConfig:
    """BigGAN-deep generator.

    The conditioning vector of every class-conditional batch norm is `concat(z, embed(y))`
    (BigGAN-deep feeds the whole z to every block instead of splitting it into chunks), so
    the shared class embedding has `z_dim` outputs and the condition has `2 * z_dim`.
    """

    resolution: int = 128
    z_dim: int = 128
    num_classes: int = 1000
    ch: int = 128
    layers: tuple[tuple[bool, int, int], ...] = _LAYERS_128
    attention_index: int = 8
    """Self-attention runs just before the block with this index."""
    eps: float = 1e-4
    """Used by the batch norms and by the spectral-norm power iteration, as in the release."""
    n_stats: int = 51
    """Number of truncation values (0, 0.02, ..., 1) with stored batch-norm statistics."""

    @property
    def cond_dim(self) -> int:
        return 2 * self.z_dim

    @property
    def bottom_width(self) -> int:
        return self.resolution // 2 ** sum(1 for up, _, _ in self.layers if up)

    def to_reference_dict(self) -> dict[str, Any]:
        """The config.json of pytorch-pretrained-biggan for this configuration."""
        return {"output_dim": self.resolution, "z_dim": self.z_dim, "class_embed_dim": self.z_dim,
                "channel_width": self.ch, "num_classes": self.num_classes,
                "layers": [list(layer) for layer in self.layers], "attention_layer_position": self.attention_index,
                "eps": self.eps, "n_stats": self.n_stats}

    @classmethod
    def from_reference_dict(cls, d: dict[str, Any]) -> "BigGANConfig":
        """Read pytorch-pretrained-biggan's config.json (missing fields take its defaults)."""
        base = cls()
        layers = d.get("layers", base.layers)
        return cls(resolution=int(d.get("output_dim", base.resolution)), z_dim=int(d.get("z_dim", base.z_dim)),
                   num_classes=int(d.get("num_classes", base.num_classes)),
                   ch=int(d.get("channel_width", base.ch)),
                   layers=tuple((bool(u), int(i), int(o)) for u, i, o in layers),
                   attention_index=int(d.get("attention_layer_position", base.attention_index)),
                   eps=float(d.get("eps", base.eps)), n_stats=int(d.get("n_stats", base.n_stats)))


@dataclass(frozen=True)
class BigGANDiscriminatorConfig:
    """BigGAN-deep discriminator: the mirror image of the generator (paper, appendix B)."""

    resolution: int = 128
    num_classes: int = 1000
    ch: int = 128
    layers: tuple[tuple[bool, int, int], ...] = ()
    """(downsample?, input width, output width) per block; empty: mirror the generator's layers."""
    attention_index: int = 2
    """Self-attention runs just before the block with this index."""
    eps: float = 1e-4

    @classmethod
    def mirror(cls, g: BigGANConfig) -> "BigGANDiscriminatorConfig":
        """The discriminator the paper pairs with generator `g`: blocks reversed, up becomes down."""
        layers = tuple((up, out_w, in_w) for up, in_w, out_w in reversed(g.layers))
        return cls(resolution=g.resolution, num_classes=g.num_classes, ch=g.ch, layers=layers,
                   attention_index=len(g.layers) - g.attention_index, eps=g.eps)


PRESETS: dict[str, BigGANConfig] = {
    "biggan-deep-128": BigGANConfig(resolution=128, layers=_LAYERS_128),
    "biggan-deep-256": BigGANConfig(resolution=256, layers=_LAYERS_256),
    "biggan-deep-512": BigGANConfig(resolution=512, layers=_LAYERS_512),
    # 16x16 images, 10 classes, for tests. Widths go 16 * ch -> ch by halving, and the bottom is
    # 4x4: what the reference implementation assumes.
    "tiny": BigGANConfig(resolution=16, z_dim=16, num_classes=10, ch=4,
                         layers=((True, 16, 8), (False, 8, 4), (True, 4, 2), (False, 2, 1)),
                         attention_index=2),
}


def preset(name: str) -> BigGANConfig:
    return PRESETS[SPEC.check_preset(name)]


def config_dict(config: Any) -> dict[str, Any]:
    return asdict(config)
