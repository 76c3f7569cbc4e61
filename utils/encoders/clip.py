"""CLIP text encoders as latent diffusion models use them, over transformers' CLIP text models.

- CLIP ViT-L/14 (`clip-l`): SD 1.x (last layer), SDXL (penultimate layer), SD3 and FLUX (pooled);
  transformers' CLIPTextModel, or CLIPTextModelWithProjection where the projection is used (SD3).
- OpenCLIP ViT-bigG/14 (`bigg`): SDXL's second encoder (penultimate layer + projected pooled
  features); CLIPTextModelWithProjection. Single files store it in the OpenCLIP layout, converted by
  `utils.encoders.convert.open_clip_to_hf`.

Tokenizers: transformers' CLIPTokenizer (vocab.json + merges.txt), 77 tokens; longer prompts are
truncated with a `PromptTruncatedWarning`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from utils.encoders.text import (TextEncoderOutput, find_component, finish_meta_model, resolve_tokenizer_source, tokenize, tokenizer_folder_for)
from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class CLIPTextEncoderConfig:
    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    max_length: int = 77
    hidden_act: str = "quick_gelu"
    projection_dim: int = 768
    with_projection: bool = False
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 1
    layer_norm_eps: float = 1e-5
    tokenizer_source: str = "openai/clip-vit-large-patch14"
    """Where the tokenizer comes from when a single weights file is loaded (hub id[:subfolder])."""

    @classmethod
    def preset(cls, name: str) -> "CLIPTextEncoderConfig":
        if name not in CLIP_PRESETS:
            raise UserError(f"unknown CLIP text encoder preset '{name}': {did_you_mean(name, CLIP_PRESETS)}")
        return CLIP_PRESETS[name]

    def with_(self, **changes) -> "CLIPTextEncoderConfig":
        return replace(self, **changes)

    def to_transformers(self):
        from transformers import CLIPTextConfig

        return CLIPTextConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            max_position_embeddings=self.max_length, hidden_act=self.hidden_act, projection_dim=self.projection_dim,
            layer_norm_eps=self.layer_norm_eps, bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id, attention_dropout=0.0, dropout=0.0)

    @classmethod
    def from_transformers(cls, cfg: dict, with_projection: bool) -> "CLIPTextEncoderConfig":
        """From a transformers config.json (diffusers text_encoder/ folders)."""
        base = cls.preset("bigg") if cfg.get("hidden_size") == 1280 else cls.preset("clip-l")
        return base.with_(
            vocab_size=cfg.get("vocab_size", base.vocab_size), hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"], num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"], max_length=cfg.get("max_position_embeddings", 77),
            hidden_act=cfg.get("hidden_act", "quick_gelu"), projection_dim=cfg.get("projection_dim", cfg["hidden_size"]),
            with_projection=with_projection, layer_norm_eps=cfg.get("layer_norm_eps", 1e-5),
            bos_token_id=cfg.get("bos_token_id", base.bos_token_id), eos_token_id=cfg.get("eos_token_id", base.eos_token_id),
            pad_token_id=cfg.get("pad_token_id", base.pad_token_id))


CLIP_PRESETS: dict[str, CLIPTextEncoderConfig] = {
    "clip-l": CLIPTextEncoderConfig(),
    "bigg": CLIPTextEncoderConfig(hidden_size=1280, intermediate_size=5120, num_layers=32, num_heads=20,
                                  hidden_act="gelu", projection_dim=1280, with_projection=True,
                                  tokenizer_source="laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"),
    # Tests: matches tests/helpers/tokenizers.write_clip_tokenizer (1000 tokens, bos 998, eos 999).
    "tiny": CLIPTextEncoderConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_layers=3, num_heads=4,
                                  projection_dim=24, bos_token_id=998, eos_token_id=999, tokenizer_source=""),
    "tiny-bigg": CLIPTextEncoderConfig(vocab_size=1000, hidden_size=40, intermediate_size=160, num_layers=3,
                                       num_heads=4, hidden_act="gelu", projection_dim=32, with_projection=True,
                                       bos_token_id=998, eos_token_id=999, tokenizer_source=""),
}


def load_clip_tokenizer(source: str | os.PathLike) -> Any:
    """transformers' CLIPTokenizer from a folder (vocab.json + merges.txt) or a hub id[:subfolder]."""
    from transformers import CLIPTokenizer

    folder = resolve_tokenizer_source(source, ["vocab.json", "merges.txt", "special_tokens_map.json",
                                               "tokenizer_config.json"])
    return CLIPTokenizer.from_pretrained(str(folder))


class CLIPTextEncoder(nn.Module):
    """A CLIP text transformer and its tokenizer; `encode(prompts)` gives a TextEncoderOutput."""

    def __init__(self, config: CLIPTextEncoderConfig | str = "clip-l", tokenizer: Any = None,
                 model: nn.Module | None = None):
        super().__init__()
        cfg = CLIPTextEncoderConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        if model is None:
            from transformers import CLIPTextModel, CLIPTextModelWithProjection

            cls = CLIPTextModelWithProjection if cfg.with_projection else CLIPTextModel
            model = cls(cfg.to_transformers())
        self.model = model.eval()
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def tokenize(self, prompts: str | Sequence[str]) -> dict:
        return tokenize(self.tokenizer, prompts, self.config.max_length, "CLIP text encoder")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> TextEncoderOutput:
        """Token ids (B, L) -> every layer's features, the pooled feature and (with projection) text_embeds.

        Latent diffusion models pass no attention mask (CLIP's causal mask is enough); give one to
        hide padding from later tokens.
        """
        input_ids = input_ids.to(self.device)
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
        if self.config.with_projection:
            last, embeds = out.last_hidden_state, out.text_embeds
            pooled = self._pooled(last, input_ids)
        else:
            last, embeds, pooled = out.last_hidden_state, None, out.pooler_output
        return TextEncoderOutput(last_hidden_state=last, hidden_states=tuple(out.hidden_states), pooled=pooled,
                                 text_embeds=embeds, input_ids=input_ids, attention_mask=attention_mask)

    def _pooled(self, last: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        # The feature at the first end-of-text token (what the projection is applied to).
        eos = (input_ids == self.config.eos_token_id).int().argmax(dim=-1)
        return last[torch.arange(last.shape[0], device=last.device), eos]

    @torch.inference_mode()
    def encode(self, prompts: str | Sequence[str]) -> TextEncoderOutput:
        """Tokenize (77 tokens, truncation warned) and encode."""
        tokens = self.tokenize(prompts)
        return self(tokens["input_ids"])

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None, tokenizer: str | os.PathLike | bool | None = None,
                        with_projection: bool | None = None) -> "CLIPTextEncoder":
        """Load from a diffusers pipeline or component folder, a single file, or a hub id.

        - folder: `text_encoder/` (or `subfolder`), or the pipeline root, where the encoder whose
          width fits `preset` is picked (clip-l: text_encoder, bigg: text_encoder_2); the tokenizer
          comes from the sibling `tokenizer*/` folder;
        - single file (clip_l.safetensors, clip_g.safetensors, an SD/SDXL/SD3 checkpoint): the
          encoder whose width fits `preset`, in the transformers or OpenCLIP layout; the tokenizer
          from `tokenizer` or else the preset's hub repo;
        - no source: random weights at `preset`.
        `tokenizer=False` loads no tokenizer (call the encoder with input_ids).
        """
        from utils.encoders import convert
        from utils.torch_utils import resolve_device, resolve_dtype
        from utils.weights import load_folder_state_dict, load_state_dict, resolve

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        cfg = CLIPTextEncoderConfig.preset(preset) if preset is not None else None
        if cfg is not None and with_projection is not None:
            cfg = cfg.with_(with_projection=with_projection)
        tok_folder: Path | None = None

        if source is None:
            if cfg is None:
                raise UserError(f"CLIPTextEncoder.from_pretrained needs a source or a preset ({sorted(CLIP_PRESETS)})")
            enc = cls(cfg, tokenizer=_tokenizer_or_none(tokenizer, None))
            return enc.to(device=dev, dtype=dt)

        local = Path(os.path.expanduser(str(source)))
        if not local.exists():
            subs = [subfolder] if subfolder else ["text_encoder", "text_encoder_2"]
            patterns = [f"{s}/*" for s in subs] + [f"{s.replace('text_encoder', 'tokenizer')}/*" for s in subs]
            local = resolve(str(source), allow_patterns=patterns + ["config.json", "*.safetensors", "vocab.json",
                                                                    "merges.txt", "*.json"])
        path = local / subfolder if subfolder else local
        if path.is_dir():
            width = cfg.hidden_size if cfg is not None else None
            folder = find_component(path, ["text_encoder", "text_encoder_2", "text_encoder_3"],
                                    ["clip_text_model", "clip"], "hidden_size", width)
            raw = _read_clip_config(folder)
            arch = " ".join(raw.get("architectures", []))
            proj = "WithProjection" in arch if with_projection is None else with_projection
            cfg = CLIPTextEncoderConfig.from_transformers(raw, proj)
            sd = load_folder_state_dict(folder, name="model", dtype=dt)
            sd = convert.hf_clip_from_checkpoint(sd, "", keep_projection=cfg.with_projection)
            tok_folder = tokenizer_folder_for(folder)
        else:
            full = load_state_dict(path, dtype=dt)
            sd, found = convert.clip_to_native(full, cfg.hidden_size if cfg is not None else None,
                                               keep_projection=True)
            if cfg is None:
                cfg = _preset_for_width(found.width)
            if with_projection is None and found.layout == "open_clip":
                cfg = cfg.with_(with_projection=True)
            if not cfg.with_projection:
                sd.pop("text_projection.weight", None)
            if found.layers != cfg.num_layers:
                cfg = cfg.with_(num_layers=found.layers)
        model = cls._build(cfg, sd)
        tok = _tokenizer_or_none(tokenizer, tok_folder if tok_folder is not None else (cfg.tokenizer_source or None))
        return cls(cfg, tokenizer=tok, model=model).to(device=dev, dtype=dt)

    @staticmethod
    def _build(cfg: CLIPTextEncoderConfig, sd: dict[str, torch.Tensor]) -> nn.Module:
        """Build the transformers model on the meta device (no allocation) and hand it the tensors."""
        from transformers import CLIPTextModel, CLIPTextModelWithProjection

        from utils.weights import load_into

        cls = CLIPTextModelWithProjection if cfg.with_projection else CLIPTextModel
        from utils.encoders.convert import hf_clip_from_checkpoint

        with torch.device("meta"):
            model = cls(cfg.to_transformers())
        sd = hf_clip_from_checkpoint(sd, "", keep_projection=cfg.with_projection)
        if "text_model.embeddings.token_embedding.weight" not in model.state_dict():
            # transformers >= 5: CLIPTextModel holds the text transformer's parts directly
            sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
        load_into(model, sd, what="CLIP text encoder checkpoint")
        finish_meta_model(model, "CLIP text encoder")
        return model.eval()


def _read_clip_config(folder: Path) -> dict:
    from utils.encoders.text import read_config

    raw = read_config(folder)
    return raw.get("text_config", raw) if raw.get("model_type") == "clip" else raw


def _preset_for_width(width: int) -> CLIPTextEncoderConfig:
    for name in ("clip-l", "bigg"):
        if CLIP_PRESETS[name].hidden_size == width:
            return CLIP_PRESETS[name]
    raise UserError(f"a CLIP text encoder of width {width} matches no preset: pass preset=... "
                    f"({', '.join(sorted(CLIP_PRESETS))})")


def _tokenizer_or_none(tokenizer: Any, default: Any) -> Any:
    if tokenizer is False:
        return None
    if tokenizer is None or tokenizer is True:
        if default in (None, ""):
            if tokenizer is True:
                raise UserError("no tokenizer source is known for this encoder: pass tokenizer=<folder or hub id>")
            return None
        return load_clip_tokenizer(default)
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_clip_tokenizer(tokenizer)
    return tokenizer  # an already built tokenizer object


__all__ = ["CLIPTextEncoder", "CLIPTextEncoderConfig", "CLIP_PRESETS", "load_clip_tokenizer"]
