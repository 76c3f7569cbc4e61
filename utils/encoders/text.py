"""What the CLIP and T5 text encoders share: tokenizing with a truncation warning, the output
record, finding a component in a diffusers folder, and finishing a model built on the meta device."""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from utils.errors import UserError, WeightsError


class PromptTruncatedWarning(UserWarning):
    """A prompt had more tokens than the text encoder reads; the rest were dropped."""


@dataclass
class TextEncoderOutput:
    """Per-token features and pooled features of a batch of prompts.

    - `last_hidden_state` (B, L, D): the last layer (after the final layer norm for CLIP);
    - `hidden_states`: the embeddings then every layer's output (before any final norm), so
      `hidden_states[-2]` is the penultimate layer SDXL conditions on;
    - `pooled` (B, D): CLIP's end-of-text token feature (None for T5);
    - `text_embeds` (B, P): `pooled` through the text projection (CLIPTextModelWithProjection only);
    - `input_ids`, `attention_mask`: what went in.
    """

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    pooled: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    input_ids: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None

    @property
    def penultimate(self) -> torch.Tensor:
        if self.hidden_states is None:
            raise ValueError("hidden states were not kept: call the encoder with output_hidden_states=True")
        return self.hidden_states[-2]


def tokenize(tokenizer: Any, prompts: str | Sequence[str], max_length: int, what: str = "text encoder") -> dict:
    """Pad and truncate `prompts` to `max_length` tokens (special tokens included).

    Every prompt that does not fit raises a `PromptTruncatedWarning` saying how many tokens were dropped.
    """
    if tokenizer is None:
        raise UserError(f"the {what} was loaded without a tokenizer: pass tokenizer=<folder or hub id> to "
                        "from_pretrained, or call it with input_ids")
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    full = tokenizer(prompts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    for i, ids in enumerate(full):
        if len(ids) > max_length:
            dropped = len(ids) - max_length
            preview = prompts[i] if len(prompts[i]) <= 60 else prompts[i][:57] + "..."
            warnings.warn(f"{what}: prompt {i} ('{preview}') is {len(ids)} tokens long and the encoder reads "
                          f"{max_length}: {dropped} token{'s' if dropped != 1 else ''} dropped",
                          PromptTruncatedWarning, stacklevel=3)
    enc = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


# -- folders ------------------------------------------------------------------------------------------

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def is_component_folder(folder: Path) -> bool:
    """A transformers model folder: config.json and a weights file (or shard index)."""
    return (folder / "config.json").exists() and any((folder / f).exists() for f in _WEIGHT_FILES)


def read_config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def find_component(root: Path, candidates: Sequence[str], model_types: Sequence[str],
                   width_key: str, width: int | None) -> Path:
    """The component folder of a diffusers pipeline folder that holds the wanted encoder."""
    if is_component_folder(root):
        return root
    seen = []
    for name in candidates:
        folder = root / name
        if not is_component_folder(folder):
            continue
        cfg = read_config(folder)
        seen.append(f"{name} ({cfg.get('model_type')}, {cfg.get(width_key)})")
        if cfg.get("model_type") in model_types and (width is None or cfg.get(width_key) == width):
            return folder
    found = f" (found {', '.join(seen)})" if seen else ""
    raise WeightsError(f"no {'/'.join(model_types)} text encoder in {root}{found}: pass the component folder "
                       f"itself or subfolder=..., or pick the preset that matches")


def tokenizer_folder_for(component: Path) -> Path | None:
    """text_encoder_2/ -> its sibling tokenizer_2/ (diffusers layout); the folder itself if it has one."""
    name = component.name
    if name.startswith("text_encoder"):
        sibling = component.parent / name.replace("text_encoder", "tokenizer", 1)
        if sibling.is_dir():
            return sibling
    if any((component / f).exists() for f in ("vocab.json", "tokenizer.json", "spiece.model")):
        return component
    return None


def resolve_tokenizer_source(tokenizer: str | os.PathLike, allow: Sequence[str]) -> Path:
    """A local folder for a tokenizer given as a folder or a hub id ('owner/name' or 'owner/name:subfolder')."""
    from utils.weights import resolve

    text = str(tokenizer)
    if Path(os.path.expanduser(text)).exists():
        return Path(os.path.expanduser(text))
    repo, _, sub = text.partition(":")
    patterns = [f"{sub}/{p}" if sub else p for p in allow]
    path = resolve(repo, allow_patterns=patterns)
    return path / sub if sub else path


def finish_meta_model(model: torch.nn.Module, what: str) -> None:
    """Give buffers that no checkpoint carries (still on meta after loading) their real values."""
    for module_name, module in model.named_modules():
        for name, buf in list(module._buffers.items()):
            if buf is None or not buf.is_meta:
                continue
            if name == "position_ids":
                module._buffers[name] = torch.arange(buf.shape[-1]).expand(buf.shape).clone()
            else:
                raise WeightsError(f"the {what} has a buffer the checkpoint does not fill ({module_name}.{name}): "
                                   "this model class is not supported by the loader")


__all__ = ["PromptTruncatedWarning", "TextEncoderOutput", "tokenize"]
