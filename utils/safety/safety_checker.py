"""The CLIP-based image safety checker of the Stable Diffusion pipelines, in its release layout.

CompVis/stable-diffusion-safety-checker is a CLIP ViT-L/14 image tower with its projection, plus
17 "concept" and 3 "special care" embeddings and a threshold for each. An image is flagged when the
cosine similarity of its CLIP embedding to any concept exceeds that concept's threshold; a hit on a
special-care embedding lowers every later threshold by 0.01 (scores rounded to 3 decimals), as the
release computes it. Parameter names are the release's (`vision_model.vision_model.*`,
`visual_projection.weight`, `concept_embeds`, `special_care_embeds`, `concept_embeds_weights`,
`special_care_embeds_weights`), so its config.json + weights load as they are (`release_layout` /
`fit_vision_keys` bridge transformers 5, whose CLIPVisionModel drops the inner `vision_model.`).

`check(pixels)` takes images in [0, 1] and preprocesses them as CLIP's image processor does
(shorter side resized to 224 with bicubic interpolation, centre crop, CLIP mean/std); the resize is
PyTorch's anti-aliased bicubic, close to (not bit-equal with) the PIL resize of transformers'
processor. `refuse_unsafe(pixels)` raises `SafetyRefusal` naming the flagged images.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import SafetyRefusal, UserError, did_you_mean

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SafetyCheckerConfig:
    """Sizes of the checker's CLIP image tower (transformers' names) and of its concept tables."""

    hidden_size: int = 1024
    """Width of the vision transformer (ViT-L/14)."""
    intermediate_size: int = 4096
    """Width of its MLPs."""
    num_layers: int = 24
    """Transformer blocks."""
    num_heads: int = 16
    """Attention heads (not stored in the weights)."""
    image_size: int = 224
    """Input side in pixels."""
    patch_size: int = 14
    """Patch side in pixels."""
    projection_dim: int = 768
    """Width of the image embedding compared with the concepts."""
    hidden_act: str = "quick_gelu"
    """MLP activation of OpenAI's CLIP (not stored in the weights)."""
    num_concepts: int = 17
    """Rows of `concept_embeds`."""
    num_special: int = 3
    """Rows of `special_care_embeds`."""

    @classmethod
    def preset(cls, name: str) -> "SafetyCheckerConfig":
        if name not in SAFETY_CHECKER_PRESETS:
            raise UserError(f"unknown safety checker preset '{name}': {did_you_mean(name, SAFETY_CHECKER_PRESETS)}")
        return SAFETY_CHECKER_PRESETS[name]

    def with_(self, **changes) -> "SafetyCheckerConfig":
        return replace(self, **changes)

    def to_transformers(self):
        from transformers import CLIPVisionConfig

        return CLIPVisionConfig(hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
                                num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                                image_size=self.image_size, patch_size=self.patch_size,
                                projection_dim=self.projection_dim, hidden_act=self.hidden_act,
                                attention_dropout=0.0, dropout=0.0)

    @classmethod
    def from_transformers(cls, cfg: dict) -> "SafetyCheckerConfig":
        """From the checker's config.json (a CLIPConfig: `vision_config` and `projection_dim`)."""
        vision = cfg.get("vision_config", cfg)
        base = cls()
        return cls(hidden_size=vision.get("hidden_size", base.hidden_size),
                   intermediate_size=vision.get("intermediate_size", base.intermediate_size),
                   num_layers=vision.get("num_hidden_layers", base.num_layers),
                   num_heads=vision.get("num_attention_heads", base.num_heads),
                   image_size=vision.get("image_size", base.image_size),
                   patch_size=vision.get("patch_size", base.patch_size),
                   projection_dim=cfg.get("projection_dim", vision.get("projection_dim", base.projection_dim)),
                   hidden_act=vision.get("hidden_act", base.hidden_act))


SAFETY_CHECKER_PRESETS: dict[str, SafetyCheckerConfig] = {
    "sd": SafetyCheckerConfig(),  # CompVis/stable-diffusion-safety-checker
    "tiny": SafetyCheckerConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, image_size=32,
                                patch_size=8, projection_dim=16),
}


@dataclass
class SafetyResult:
    """The checker's verdict on a batch."""

    flagged: list[bool]
    """Per image: some concept score is above 0."""
    concept_scores: torch.Tensor
    """(B, num_concepts) cosine similarity minus threshold (+ the special-care adjustment), rounded to 3 decimals."""
    special_scores: torch.Tensor
    """(B, num_special) the same for the special-care embeddings."""

    @property
    def any(self) -> bool:
        return any(self.flagged)


def clip_preprocess(pixels: torch.Tensor, size: int = 224) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> CLIP inputs: shorter side to `size` (bicubic, anti-aliased),
    centre crop, CLIP mean/std."""
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise UserError(f"the safety checker takes RGB images (B, 3, H, W), got {tuple(pixels.shape)}")
    x = pixels.float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size]
    mean = torch.tensor(CLIP_MEAN, device=x.device)[None, :, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[None, :, None, None]
    return (x - mean) / std


class SafetyChecker(nn.Module):
    """CLIP image embedding vs. concept embeddings; see the module docstring."""

    def __init__(self, config: SafetyCheckerConfig | str = "sd", vision_model: nn.Module | None = None):
        super().__init__()
        cfg = SafetyCheckerConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        if vision_model is None:
            from transformers import CLIPVisionModel

            vision_model = CLIPVisionModel(cfg.to_transformers())
        self.vision_model = vision_model.eval()
        self.visual_projection = nn.Linear(cfg.hidden_size, cfg.projection_dim, bias=False)
        p = cfg.projection_dim
        self.concept_embeds = nn.Parameter(torch.ones(cfg.num_concepts, p), requires_grad=False)
        self.special_care_embeds = nn.Parameter(torch.ones(cfg.num_special, p), requires_grad=False)
        self.concept_embeds_weights = nn.Parameter(torch.ones(cfg.num_concepts), requires_grad=False)
        self.special_care_embeds_weights = nn.Parameter(torch.ones(cfg.num_special), requires_grad=False)

    @property
    def device(self) -> torch.device:
        return self.visual_projection.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.visual_projection.weight.dtype

    @torch.inference_mode()
    def image_embeds(self, clip_input: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) CLIP inputs -> (B, projection_dim) image embeddings."""
        pooled = self.vision_model(pixel_values=clip_input.to(self.device, self.dtype)).pooler_output
        return self.visual_projection(pooled)

    @torch.inference_mode()
    def scores(self, clip_input: torch.Tensor) -> SafetyResult:
        """The release's decision rule on preprocessed inputs (scores rounded to 3 decimals)."""
        emb = F.normalize(self.image_embeds(clip_input), dim=-1)
        # float32 NumPy arithmetic in the release's order, so a score on a rounding edge decides alike
        special_cos = (emb @ F.normalize(self.special_care_embeds, dim=-1).T).cpu().float().numpy()
        concept_cos = (emb @ F.normalize(self.concept_embeds, dim=-1).T).cpu().float().numpy()
        special_thr = [float(v) for v in self.special_care_embeds_weights.float().cpu()]
        concept_thr = [float(v) for v in self.concept_embeds_weights.float().cpu()]
        special = torch.zeros(special_cos.shape)
        concept = torch.zeros(concept_cos.shape)
        flagged = []
        for i in range(special_cos.shape[0]):
            adjustment = 0.0
            for j, thr in enumerate(special_thr):  # a hit raises every later score by 0.01
                special[i, j] = float(round(special_cos[i][j] - thr + adjustment, 3))
                if special[i, j] > 0:
                    adjustment = 0.01
            for j, thr in enumerate(concept_thr):
                concept[i, j] = float(round(concept_cos[i][j] - thr + adjustment, 3))
            flagged.append(bool((concept[i] > 0).any()))
        return SafetyResult(flagged, concept, special)

    def check(self, pixels: torch.Tensor) -> SafetyResult:
        """Images (B, 3, H, W) in [0, 1] -> the verdict."""
        return self.scores(clip_preprocess(pixels, self.config.image_size))

    def refuse_unsafe(self, pixels: torch.Tensor) -> SafetyResult:
        """Raise SafetyRefusal (exit code 3 in the CLIs) when any image is flagged; else the verdict."""
        result = self.check(pixels)
        if result.any:
            which = [i for i, f in enumerate(result.flagged) if f]
            names = "the image" if len(result.flagged) == 1 else f"image(s) {', '.join(map(str, which))}"
            raise SafetyRefusal(f"{names} was refused by the image safety checker (it resembles a filtered "
                                "concept): try another prompt or seed (nothing was written)")
        return result

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None) -> "SafetyChecker":
        """Load CompVis/stable-diffusion-safety-checker (or a pipeline's safety_checker/ folder); no source
        and `preset='tiny'` builds random weights."""
        from utils.encoders.text import finish_meta_model
        from utils.torch_utils import local_seed, resolve_device, resolve_dtype
        from utils.weights import load_into, load_state_dict
        from utils.weights.hub import locate

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.float16)
        if source is None:
            if preset is None:
                raise UserError("SafetyChecker.from_pretrained needs a source "
                                "(CompVis/stable-diffusion-safety-checker) or preset='tiny'")
            with local_seed(0):
                return cls(SafetyCheckerConfig.preset(preset)).eval().to(dev, dt)
        path = locate(source, ["*.json", "*.safetensors"], "safety checker weights")
        folder = path / subfolder if subfolder else path
        if folder.is_dir():
            cfg_file = folder / "config.json"
            if not cfg_file.is_file():
                raise UserError(f"{folder} has no config.json: pass the safety checker's folder "
                                "(CompVis/stable-diffusion-safety-checker)")
            cfg = SafetyCheckerConfig.from_transformers(json.loads(cfg_file.read_text()))
            files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
            if not files:
                raise UserError(f"{folder} holds no weights (model.safetensors or pytorch_model.bin)")
            sd: dict[str, torch.Tensor] = {}
            for f in files:
                sd.update(load_state_dict(f))
        else:
            sd = load_state_dict(folder)
            cfg = _config_from_shapes(sd, preset)
        with torch.device("meta"):
            model = cls(cfg)
        load_into(model, fit_vision_keys(sd, model.state_dict().keys()), what="safety checker")
        finish_meta_model(model, "safety checker")  # CLIP's position ids are not in the file
        return model.eval().to(dev, dt)


RELEASE_TOWER = "vision_model.vision_model."


def release_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The release's names (`vision_model.vision_model.*`) whatever transformers version built the module
    (transformers 5 keeps CLIPVisionModel's layers one level higher: `vision_model.embeddings.*`)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("vision_model.") and not k.startswith(RELEASE_TOWER):
            k = RELEASE_TOWER + k[len("vision_model."):]
        out[k] = v
    return out


def fit_vision_keys(sd: dict[str, torch.Tensor], expected) -> dict[str, torch.Tensor]:
    """Release-layout (or module-layout) tensors renamed to the keys this transformers' module expects."""
    sd = release_layout(sd)
    if any(k.startswith(RELEASE_TOWER) for k in expected):
        return sd
    return {("vision_model." + k[len(RELEASE_TOWER):] if k.startswith(RELEASE_TOWER) else k): v for k, v in sd.items()}


def _config_from_shapes(sd: dict[str, torch.Tensor], preset: str | None) -> SafetyCheckerConfig:
    base = SafetyCheckerConfig.preset(preset or "sd")
    sd = release_layout(sd)
    try:
        proj = sd["visual_projection.weight"]
        patch = sd["vision_model.vision_model.embeddings.patch_embedding.weight"]
        pos = sd["vision_model.vision_model.embeddings.position_embedding.weight"]
    except KeyError as err:
        raise UserError(f"not a safety checker: the key {err} is missing") from None
    layers = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("vision_model.vision_model.encoder.layers."))
    fc1 = sd["vision_model.vision_model.encoder.layers.0.mlp.fc1.weight"]
    side = int(round((pos.shape[0] - 1) ** 0.5)) * patch.shape[-1]
    return base.with_(hidden_size=proj.shape[1], projection_dim=proj.shape[0], patch_size=patch.shape[-1],
                      image_size=side, num_layers=layers, intermediate_size=fc1.shape[0],
                      num_concepts=sd["concept_embeds"].shape[0], num_special=sd["special_care_embeds"].shape[0])


__all__ = ["SAFETY_CHECKER_PRESETS", "SafetyChecker", "SafetyCheckerConfig", "SafetyResult", "clip_preprocess",
           "fit_vision_keys", "release_layout"]
