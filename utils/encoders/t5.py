"""The T5 v1.1 XXL encoder as SD3 and FLUX use it, over transformers' T5EncoderModel.

Prompts are tokenized by transformers' T5Tokenizer (spiece.model or tokenizer.json) and padded to
`max_length` tokens: 256 for FLUX.1-schnell and SD3's default, 512 for FLUX.1-dev. Longer prompts
are truncated with a `PromptTruncatedWarning`. Like the reference pipelines, no attention mask is
given to the encoder unless asked (`use_attention_mask=True`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from utils.encoders.text import (TextEncoderOutput, find_component, finish_meta_model, read_config,
                                 resolve_tokenizer_source, tokenize, tokenizer_folder_for)
from utils.errors import UserError, did_you_mean


@dataclass(frozen=True)
class T5EncoderConfig:
    vocab_size: int = 32128
    d_model: int = 4096
    d_ff: int = 10240
    d_kv: int = 64
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "gated-gelu"
    layer_norm_epsilon: float = 1e-6
    max_length: int = 512
    tokenizer_source: str = "google/t5-v1_1-xxl"
    per_layer_bias: bool = False  # UMT5 (Wan's text encoder): a relative position bias in every layer, not only the first

    @classmethod
    def preset(cls, name: str) -> "T5EncoderConfig":
        if name not in T5_PRESETS:
            raise UserError(f"unknown T5 encoder preset '{name}': {did_you_mean(name, T5_PRESETS)}")
        return T5_PRESETS[name]

    def with_(self, **changes) -> "T5EncoderConfig":
        return replace(self, **changes)

    def to_transformers(self):
        from transformers import T5Config, UMT5Config

        return (UMT5Config if self.per_layer_bias else T5Config)(vocab_size=self.vocab_size, d_model=self.d_model, d_ff=self.d_ff, d_kv=self.d_kv,
                        num_layers=self.num_layers, num_heads=self.num_heads,
                        relative_attention_num_buckets=self.relative_attention_num_buckets,
                        relative_attention_max_distance=self.relative_attention_max_distance,
                        feed_forward_proj=self.feed_forward_proj, layer_norm_epsilon=self.layer_norm_epsilon,
                        dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False,
                        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)

    @classmethod
    def from_transformers(cls, cfg: dict, max_length: int) -> "T5EncoderConfig":
        base = cls.preset("t5-xxl")
        return base.with_(
            vocab_size=cfg.get("vocab_size", base.vocab_size), d_model=cfg["d_model"], d_ff=cfg["d_ff"],
            d_kv=cfg.get("d_kv", 64), num_layers=cfg["num_layers"], num_heads=cfg["num_heads"],
            relative_attention_num_buckets=cfg.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=cfg.get("relative_attention_max_distance", 128),
            feed_forward_proj=cfg.get("feed_forward_proj", "gated-gelu"),
            layer_norm_epsilon=cfg.get("layer_norm_epsilon", 1e-6), max_length=max_length,
            per_layer_bias=cfg.get("model_type") == "umt5", tokenizer_source=base.tokenizer_source
            if cfg.get("model_type") != "umt5" else "")


T5_PRESETS: dict[str, T5EncoderConfig] = {
    "t5-xxl": T5EncoderConfig(),
    "t5-xxl-256": T5EncoderConfig(max_length=256),
    # Tests: fits tests/helpers/tokenizers.write_t5_tokenizer (about 212 tokens with the sentinels).
    "tiny": T5EncoderConfig(vocab_size=256, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4,
                            relative_attention_num_buckets=8, relative_attention_max_distance=16, max_length=32,
                            tokenizer_source=""),
    # Wan 2.1 / 2.2's text encoder (google/umt5-xxl's encoder half); its tokenizer ships with the Wan weights.
    "umt5-xxl": T5EncoderConfig(vocab_size=256384, num_layers=24, num_heads=64, max_length=512, tokenizer_source="",
                                per_layer_bias=True),
    "umt5-tiny": T5EncoderConfig(vocab_size=256, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, relative_attention_max_distance=16, max_length=32,
                                 tokenizer_source="", per_layer_bias=True),
}


def _encoder_class(cfg: T5EncoderConfig) -> type:
    from transformers import T5EncoderModel, UMT5EncoderModel

    return UMT5EncoderModel if cfg.per_layer_bias else T5EncoderModel


def load_t5_tokenizer(source: str | os.PathLike) -> Any:
    """transformers' T5Tokenizer from a folder (spiece.model or tokenizer.json) or a hub id[:subfolder]."""
    from transformers import T5Tokenizer

    folder = resolve_tokenizer_source(source, ["spiece.model", "tokenizer.json", "special_tokens_map.json",
                                               "tokenizer_config.json"])
    return T5Tokenizer.from_pretrained(str(folder))


class T5TextEncoder(nn.Module):
    """A T5 encoder stack and its tokenizer; `encode(prompts)` gives a TextEncoderOutput."""

    def __init__(self, config: T5EncoderConfig | str = "t5-xxl", tokenizer: Any = None,
                 model: nn.Module | None = None):
        super().__init__()
        cfg = T5EncoderConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        if model is None:
            model = _encoder_class(cfg)(cfg.to_transformers())
        self.model = model.eval()
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def tokenize(self, prompts: str | Sequence[str], max_length: int | None = None) -> dict:
        return tokenize(self.tokenizer, prompts, max_length or self.config.max_length, "T5 text encoder")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> TextEncoderOutput:
        input_ids = input_ids.to(self.device)
        mask = attention_mask.to(self.device) if attention_mask is not None else None
        out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=output_hidden_states)
        hidden = tuple(out.hidden_states) if output_hidden_states else None
        return TextEncoderOutput(last_hidden_state=out.last_hidden_state, hidden_states=hidden,
                                 input_ids=input_ids, attention_mask=attention_mask)

    @torch.inference_mode()
    def encode(self, prompts: str | Sequence[str], max_length: int | None = None,
               use_attention_mask: bool = False) -> TextEncoderOutput:
        """Tokenize (padded to max_length, truncation warned) and encode."""
        tokens = self.tokenize(prompts, max_length)
        out = self(tokens["input_ids"], tokens["attention_mask"] if use_attention_mask else None)
        out.attention_mask = tokens["attention_mask"]
        return out

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None, tokenizer: str | os.PathLike | bool | None = None,
                        max_length: int | None = None) -> "T5TextEncoder":
        """Load from a diffusers folder (text_encoder_3/ of SD3, text_encoder_2/ of FLUX, or the root),
        a single file (t5xxl_fp16.safetensors, an SD3 checkpoint with `text_encoders.t5xxl.`), or a hub id.

        The tokenizer comes from the sibling tokenizer folder, `tokenizer`, or the preset's hub repo.
        """
        from utils.encoders import convert
        from utils.torch_utils import resolve_device, resolve_dtype
        from utils.weights import load_folder_state_dict, load_state_dict, resolve

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        cfg = T5EncoderConfig.preset(preset) if preset is not None else None
        tok_folder: Path | None = None
        if source is None:
            if cfg is None:
                raise UserError(f"T5TextEncoder.from_pretrained needs a source or a preset ({sorted(T5_PRESETS)})")
            if max_length:
                cfg = cfg.with_(max_length=max_length)
            return cls(cfg, tokenizer=_tokenizer_or_none(tokenizer, None)).to(device=dev, dtype=dt)

        local = Path(os.path.expanduser(str(source)))
        if not local.exists():
            subs = [subfolder] if subfolder else ["text_encoder_2", "text_encoder_3"]
            patterns = [f"{s}/*" for s in subs] + [f"{s.replace('text_encoder', 'tokenizer')}/*" for s in subs]
            local = resolve(str(source), allow_patterns=patterns)
        path = local / subfolder if subfolder else local
        if path.is_dir():
            folder = find_component(path, ["text_encoder_3", "text_encoder_2", "text_encoder"], ["t5", "umt5"],
                                    "d_model", cfg.d_model if cfg is not None else None)
            cfg = T5EncoderConfig.from_transformers(read_config(folder),
                                                    max_length or (cfg.max_length if cfg else 512))
            sd, _ = convert.t5_to_native(load_folder_state_dict(folder, name="model", dtype=dt))
            tok_folder = tokenizer_folder_for(folder)
        else:
            from utils.encoders import umt5_convert

            raw = load_state_dict(path, dtype=dt)
            if umt5_convert.is_official(raw):  # Wan's models_t5_umt5-xxl-enc-bf16.pth: sizes from the shapes
                cfg = (cfg or T5EncoderConfig.preset("umt5-xxl")).with_(**umt5_convert.read_sizes(raw))
                raw = umt5_convert.official_to_transformers(raw)
            sd, found = convert.t5_to_native(raw, cfg.d_model if cfg is not None else None)
            cfg = cfg or T5EncoderConfig.preset("t5-xxl")
            if found.layers != cfg.num_layers:
                cfg = cfg.with_(num_layers=found.layers)
        if max_length:
            cfg = cfg.with_(max_length=max_length)
        model = cls._build(cfg, sd)
        tok = _tokenizer_or_none(tokenizer, tok_folder if tok_folder is not None else (cfg.tokenizer_source or None))
        return cls(cfg, tokenizer=tok, model=model).to(device=dev, dtype=dt)

    @staticmethod
    def _build(cfg: T5EncoderConfig, sd: dict[str, torch.Tensor]) -> nn.Module:
        """Build T5EncoderModel (UMT5EncoderModel) on the meta device and hand it the tensors; re-tie the embedding."""
        from utils.weights import load_into

        with torch.device("meta"):
            model = _encoder_class(cfg)(cfg.to_transformers())
        expected = set(model.state_dict())
        sd = {k: v for k, v in sd.items() if k in expected or k not in ("encoder.embed_tokens.weight",)}
        load_into(model, sd, what="T5 encoder checkpoint")
        model.encoder.embed_tokens.weight = model.shared.weight  # one tensor, as in the original model
        finish_meta_model(model, "T5 encoder")
        return model.eval()


def _tokenizer_or_none(tokenizer: Any, default: Any) -> Any:
    if tokenizer is False:
        return None
    if tokenizer is None or tokenizer is True:
        if default in (None, ""):
            if tokenizer is True:
                raise UserError("no tokenizer source is known for this encoder: pass tokenizer=<folder or hub id>")
            return None
        return load_t5_tokenizer(default)
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_t5_tokenizer(tokenizer)
    return tokenizer


__all__ = ["T5EncoderConfig", "T5TextEncoder", "T5_PRESETS", "load_t5_tokenizer"]
