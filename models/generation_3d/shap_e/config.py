"""Shap-E architecture presets: the latent prior, the implicit decoder and the conditioning encoder."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class PriorConfig:
    """The latent diffusion transformer (OpenAI's CLIPImage[Grid]PointDiffusionTransformer in a SplitVectorDiffusion)."""

    n_ctx: int = 1024
    """Latent tokens: the latent is (n_ctx, channels), one token per row of the decoder MLP's weights."""
    channels: int = 1024
    """Channels per latent token (d_latent / n_ctx); the model predicts twice as many (mean and variance)."""
    width: int = 1024
    """Transformer width."""
    layers: int = 24
    """Transformer blocks."""
    heads: int = 16
    """Attention heads."""
    cond: str = "text"
    """'text': one CLIP text-embedding vector (a token before the time token); 'image': the CLIP
    image grid (one token per patch, after the time token) through LayerNorm + Linear."""
    cond_dim: int = 768
    """Width of the CLIP conditioning (768 for ViT-L/14 text embeds, 1024 for its grid features)."""
    cond_tokens: int = 1
    """Conditioning tokens: 1 for text, the patch count (256 for ViT-L/14 at 224 px) for images."""


@dataclass(frozen=True)
class DecoderConfig:
    """The implicit function: a NeRF + STF MLP whose first `projected` layers' weights come from the latent."""

    d_latent: int = 1024
    """Channels of a latent token (each row of a projected weight is made from one token)."""
    hidden: int = 256
    """MLP width."""
    hidden_layers: int = 6
    """Hidden layers: the MLP has hidden_layers + 1 linears."""
    outputs: int = 12
    """Output channels: sdf, coarse and fine density, STF rgb, coarse and fine NeRF rgb."""
    insert_direction_at: int = 4
    """The linear whose input also gets the (all-zero, view-independent) direction encoding."""
    projected: int = 4
    """The first `projected` linears take their weights from the latent (their biases stay in the checkpoint)."""
    pos_degrees: int = 15
    """Frequencies of the position encoding (2^0 .. 2^(n-1))."""
    dir_degrees: int = 8
    """Frequencies of the direction encoding."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Colour behind the object, in [0, 1]."""

    @property
    def pos_features(self) -> int:
        return 3 + 3 * 2 * self.pos_degrees

    @property
    def dir_features(self) -> int:
        return 3 + 3 * 2 * self.dir_degrees

    def layer_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of every linear of the MLP."""
        ins = [self.pos_features] + [self.hidden] * self.hidden_layers
        outs = [self.hidden] * self.hidden_layers + [self.outputs]
        ins[self.insert_direction_at] += self.dir_features
        return list(zip(outs, ins))

    @property
    def latent_rows(self) -> int:
        """Latent tokens the projected layers use: one per output row."""
        return sum(o for o, _ in self.layer_shapes()[:self.projected])


@dataclass(frozen=True)
class ShapEConfig:
    prior: PriorConfig = field(default_factory=PriorConfig)
    """The latent diffusion transformer."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The implicit decoder."""
    encoder: str = "clip-l"
    """CLIP preset of the conditioning encoder (utils.encoders: text 'clip-l' with projection, or the
    ViT-L/14 vision tower 'vit-l-14')."""

    def with_(self, **changes) -> "ShapEConfig":
        return replace(self, **changes)


def _tiny_decoder() -> DecoderConfig:
    return DecoderConfig(d_latent=16, hidden=8, hidden_layers=6, pos_degrees=15, dir_degrees=8)


def _tiny(cond: str) -> ShapEConfig:
    dec = _tiny_decoder()
    # the latent holds one token per projected weight row: 4 layers of 8 rows
    image = cond == "image"
    prior = PriorConfig(n_ctx=dec.latent_rows, channels=dec.d_latent, width=32, layers=2, heads=4, cond=cond,
                        cond_dim=32 if image else 24, cond_tokens=49 if image else 1)
    return ShapEConfig(prior=prior, decoder=dec, encoder="tiny-vision" if image else "tiny")


PRESETS: dict[str, ShapEConfig] = {
    "text300M": ShapEConfig(),
    "image300M": ShapEConfig(prior=PriorConfig(cond="image", cond_dim=1024, cond_tokens=256), encoder="vit-l-14"),
    "tiny": _tiny("text"),
    "tiny-image": _tiny("image"),
}


def get_config(preset: str) -> ShapEConfig:
    if preset not in PRESETS:
        raise UserError(f"shap_e has no preset '{preset}': {did_you_mean(preset, PRESETS)}")
    return PRESETS[preset]
