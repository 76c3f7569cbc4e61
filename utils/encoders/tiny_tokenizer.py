"""A character-level stand-in tokenizer for random-weight (`tiny`) text encoders.

It exists only so that `preset="tiny"` pipelines run offline, where no real tokenizer files are at
hand: characters map to ids (with the encoder's start, end and padding ids) and the calling
convention is that of transformers' tokenizers. Real weights always come with their real tokenizers.
"""
from __future__ import annotations

from typing import Sequence

import torch


class TinyTokenizer:
    """Character-level stand-in tokenizer for random-weight (tiny) encoders."""

    def __init__(self, vocab_size: int, eos_id: int, pad_id: int, bos_id: int | None = None, first_id: int = 3,
                 model_max_length: int = 77):
        self.vocab_size, self.eos_id, self.pad_id, self.bos_id = vocab_size, eos_id, pad_id, bos_id
        self.first_id = first_id
        self.model_max_length = model_max_length
        specials = {eos_id, pad_id} | ({bos_id} if bos_id is not None else set())
        self._ids = [i for i in range(first_id, vocab_size) if i not in specials]

    def _encode(self, text: str) -> list[int]:
        body = [self._ids[ord(ch) % len(self._ids)] for ch in text.lower()]
        return ([self.bos_id] if self.bos_id is not None else []) + body + [self.eos_id]

    def __call__(self, prompts: str | Sequence[str], padding: str | bool = False, max_length: int | None = None,
                 truncation: bool = False, return_tensors: str | None = None, **_: object) -> dict:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = [self._encode(p) for p in prompts]
        if truncation and max_length:
            ids = [x[:max_length - 1] + [self.eos_id] if len(x) > max_length else x for x in ids]
        if padding == "max_length" and max_length:
            mask = [[1] * len(x) + [0] * (max_length - len(x)) for x in ids]
            ids = [x + [self.pad_id] * (max_length - len(x)) for x in ids]
        else:
            mask = [[1] * len(x) for x in ids]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        return {"input_ids": ids, "attention_mask": mask}


def tiny_clip_tokenizer(cfg) -> TinyTokenizer:
    return TinyTokenizer(cfg.vocab_size, eos_id=cfg.eos_token_id, pad_id=cfg.eos_token_id, bos_id=cfg.bos_token_id,
                         model_max_length=cfg.max_length)


def tiny_t5_tokenizer(cfg) -> TinyTokenizer:
    return TinyTokenizer(cfg.vocab_size, eos_id=1, pad_id=0, first_id=3, model_max_length=cfg.max_length)
