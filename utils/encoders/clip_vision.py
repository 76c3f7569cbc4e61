"""CLIP image encoders (a vision transformer and its projection), over transformers' CLIPVisionModelWithProjection.

- OpenCLIP ViT-H/14 (`vit-h-14`, LAION-2B): the image embedding Stable Video Diffusion attends to
  (1024 wide). Official SVD files keep it in the OpenCLIP layout under
  `conditioner.embedders.0.open_clip.model.visual.`; diffusers folders in the transformers layout
  under `image_encoder/`. `utils.encoders.clip_vision_convert` maps the first onto the second.

`encode(images)` takes images in [-1, 1] and preprocesses them as SVD's conditioner does: an
anti-aliased resize to the model's input size (a Gaussian blur whose width follows the downscale
factor, then bicubic interpolation with aligned corners), then CLIP's mean/std normalisation.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError, WeightsError, did_you_mean

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPVisionConfig:
    """Sizes of a CLIP vision tower with projection (transformers' names)."""

    hidden_size: int = 1280
    """Width of the vision transformer."""
    intermediate_size: int = 5120
    """Width of the MLPs."""
    num_layers: int = 32
    """Transformer blocks."""
    num_heads: int = 16
    """Attention heads (not stored in the weights: 16 of 80 channels for ViT-H/14)."""
    image_size: int = 224
    """Input side in pixels."""
    patch_size: int = 14
    """Patch side in pixels."""
    projection_dim: int = 1024
    """Width of the image embedding (after the projection)."""
    hidden_act: str = "gelu"
    """MLP activation (not stored in the weights: 'gelu' for LAION's OpenCLIP models, 'quick_gelu' for OpenAI's)."""
    layer_norm_eps: float = 1e-5
    """LayerNorm epsilon (not stored in the weights)."""
    projection: bool = True
    """Whether the tower has its projection (`visual_projection`); Wan's image-to-video encoder (CLIPVisionModel,
    read at its penultimate layer's tokens) has none."""

    @classmethod
    def preset(cls, name: str) -> "CLIPVisionConfig":
        if name not in CLIP_VISION_PRESETS:
            raise UserError(f"unknown CLIP vision preset '{name}': {did_you_mean(name, CLIP_VISION_PRESETS)}")
        return CLIP_VISION_PRESETS[name]

    def with_(self, **changes) -> "CLIPVisionConfig":
        return replace(self, **changes)

    def to_transformers(self):
        from transformers import CLIPVisionConfig as HFConfig

        return HFConfig(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                        num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                        image_size=self.image_size, patch_size=self.patch_size, projection_dim=self.projection_dim,
                        hidden_act=self.hidden_act, layer_norm_eps=self.layer_norm_eps, attention_dropout=0.0,
                        dropout=0.0)

    @classmethod
    def from_transformers(cls, cfg: dict) -> "CLIPVisionConfig":
        """From a transformers config.json (a CLIPVisionModelWithProjection, or a whole CLIP's vision_config)."""
        cfg = cfg.get("vision_config", cfg) if cfg.get("model_type") == "clip" else cfg
        base = cls()
        return cls(hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                   num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
                   image_size=cfg.get("image_size", base.image_size), patch_size=cfg.get("patch_size", base.patch_size),
                   projection_dim=cfg.get("projection_dim", base.projection_dim),
                   hidden_act=cfg.get("hidden_act", "quick_gelu"), layer_norm_eps=cfg.get("layer_norm_eps", 1e-5))


CLIP_VISION_PRESETS: dict[str, CLIPVisionConfig] = {
    "vit-h-14": CLIPVisionConfig(),
    # Tests: 224-pixel input (SVD's preprocessing always resizes to the model's size) in 32-pixel patches.
    "tiny": CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, patch_size=32,
                             projection_dim=32),
}


# -- preprocessing ----------------------------------------------------------------------------------


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    k = torch.exp(-x.pow(2) / (2 * sigma ** 2))
    return k / k.sum()


def antialiased_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (B, C, H, W) to `size` as SVD's conditioner does: blur with a Gaussian of sigma
    (factor - 1) / 2 per axis (kernel 4 sigma wide, odd, at least 3; reflect padding), then bicubic
    interpolation with aligned corners. Upsizing blurs by a negligible sigma."""
    h, w = images.shape[-2:]
    sigmas = (max((h / size[0] - 1.0) / 2.0, 0.001), max((w / size[1] - 1.0) / 2.0, 0.001))
    sizes = [int(max(4.0 * s, 3)) for s in sigmas]
    sizes = [k + 1 if k % 2 == 0 else k for k in sizes]
    b, c = images.shape[:2]
    x = images
    for axis, (k, s) in enumerate(zip(sizes, sigmas)):
        kernel = _gaussian_kernel(k, s, x.dtype, x.device)
        if axis == 0:  # vertical
            weight, pad = kernel.view(1, 1, k, 1), (0, 0, k // 2, k - 1 - k // 2)
        else:
            weight, pad = kernel.view(1, 1, 1, k), (k // 2, k - 1 - k // 2, 0, 0)
        x = F.conv2d(F.pad(x.reshape(b * c, 1, *x.shape[-2:]), pad, mode="reflect"), weight)
        x = x.reshape(b, c, *x.shape[-2:])
    return F.interpolate(x, size=size, mode="bicubic", align_corners=True)


# -- the encoder ---------------------------------------------------------------------------------------


def _tower_class(cfg: CLIPVisionConfig) -> type:
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection if cfg.projection else CLIPVisionModel


class CLIPVisionEncoder(nn.Module):
    """A CLIP vision tower with projection; `encode(images)` gives (B, projection_dim) image embeddings,
    `hidden_states(pixel_values, layer)` the tokens of one layer (Wan's image-to-video: the penultimate)."""

    def __init__(self, config: CLIPVisionConfig | str = "vit-h-14", model: nn.Module | None = None):
        super().__init__()
        cfg = CLIPVisionConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        if model is None:
            model = _tower_class(cfg)(cfg.to_transformers())
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.tower.embeddings.patch_embedding.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tower.embeddings.patch_embedding.weight.dtype

    @property
    def tower(self) -> nn.Module:
        """The vision transformer (transformers' CLIPVisionModel is the tower itself, without `vision_model.`)."""
        return getattr(self.model, "vision_model", self.model)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, H, W) -> normalised pixel values at the model's input size."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise UserError(f"the CLIP image encoder takes (batch, 3, H, W) images, got shape {tuple(images.shape)}")
        side = self.config.image_size
        x = antialiased_resize(images.float(), (side, side))
        x = (x + 1.0) / 2.0
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels (B, 3, S, S) -> projected image embeddings (B, projection_dim)."""
        return self.model(pixel_values=pixel_values.to(self.device, self.dtype)).image_embeds

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> (B, projection_dim) image embeddings."""
        return self(self.preprocess(images))

    def hidden_states(self, pixel_values: torch.Tensor, layer: int = -2) -> torch.Tensor:
        """Preprocessed pixels -> the (B, tokens, hidden_size) output of `layer` (-2: the penultimate block;
        hidden_states[0] is the embeddings), before the final layer norm."""
        out = self.tower(pixel_values=pixel_values.to(self.device, self.dtype), output_hidden_states=True)
        return out.hidden_states[layer]

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None) -> "CLIPVisionEncoder":
        """Load from a diffusers pipeline folder (`image_encoder/`), a transformers folder, a single file
        (an official SVD checkpoint, an OpenCLIP model, or a transformers-layout file), or a hub id;
        no source: random weights at `preset`."""
        from utils.encoders import clip_vision_convert as conv
        from utils.torch_utils import resolve_device, resolve_dtype
        from utils.weights import load_folder_state_dict, load_state_dict, resolve

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if source is None:
            return cls(CLIPVisionConfig.preset(preset or "vit-h-14")).to(device=dev, dtype=dt)
        local = Path(os.path.expanduser(str(source)))
        if not local.exists():
            sub = subfolder or "image_encoder"
            local = resolve(str(source), allow_patterns=[f"{sub}/config.json", f"{sub}/model.safetensors"])
        path = local / subfolder if subfolder else local
        if path.is_dir():
            folder = path if (path / "config.json").exists() else path / "image_encoder"
            if not (folder / "config.json").exists():
                raise WeightsError(f"no CLIP image encoder in {path}: expected an image_encoder/ folder "
                                   "(config.json + model.safetensors)")
            from utils.encoders.text import read_config

            cfg = CLIPVisionConfig.from_transformers(read_config(folder))
            raw = load_folder_state_dict(folder, name="model", dtype=dt)
            if not any(k.startswith(("vision_model.", "visual_projection.")) for k in raw):
                raw = {"vision_model." + k: v for k, v in raw.items()}  # a CLIPVisionModel saved by transformers 5
            sd = conv.hf_vision_from_checkpoint(raw)
            cfg = cfg.with_(projection="visual_projection.weight" in sd)
        else:
            sd, cfg = conv.vision_to_native(load_state_dict(path, dtype=dt), preset)
        return cls(cfg, model=cls._build(cfg, sd)).to(device=dev, dtype=dt)

    @staticmethod
    def _build(cfg: CLIPVisionConfig, sd: dict[str, torch.Tensor]) -> nn.Module:
        """The transformers model built on the meta device (no allocation), handed the tensors."""
        from utils.encoders.text import finish_meta_model
        from utils.weights import load_into

        with torch.device("meta"):
            model = _tower_class(cfg)(cfg.to_transformers())
        if not hasattr(model, "vision_model"):  # CLIPVisionModel: its keys carry no `vision_model.` prefix
            sd = {k.removeprefix("vision_model."): v for k, v in sd.items()}
        load_into(model, sd, what="CLIP image encoder checkpoint")
        finish_meta_model(model, "CLIP image encoder")
        return model.eval()


def side_from_positions(positions: int, patch: int) -> int:
    """The input side a position table of `positions` entries (class token included) was made for."""
    grid = math.isqrt(positions - 1)
    if grid * grid != positions - 1:
        raise UserError(f"a position table of {positions} entries is no square grid plus a class token")
    return grid * patch


__all__ = ["CLIPVisionConfig", "CLIPVisionEncoder", "CLIP_MEAN", "CLIP_STD", "CLIP_VISION_PRESETS",
           "antialiased_resize", "side_from_positions"]
