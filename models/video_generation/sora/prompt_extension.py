"""Prompt extension: a short prompt rewritten into a detailed caption before generation.

OpenAI's DALL-E 3 and Sora reports describe training on long, descriptive captions and, at sampling
time, having a language model expand the user's short prompt into such a caption. The Wan release
offers the same step (its `--use_prompt_extend`, through Qwen). Here it is optional and local only:
`prompt_extender` is a function str -> str, or the folder of a transformers causal language model
(with its tokenizer) on disk; nothing is downloaded. Without one, the prompt is used as written.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from utils.errors import UserError

INSTRUCTION = ("Rewrite the video description below as one detailed paragraph for a video generator: name the "
               "subject, its appearance, the motion, the setting, the lighting and the camera. Keep every fact of "
               "the original and add no text overlays.\nDescription: {prompt}\nDetailed description:")
MAX_NEW_TOKENS = 120


class LocalPromptExtender:
    """A causal language model read from a local folder (greedy decoding, so a prompt always extends the same)."""

    def __init__(self, folder: str | os.PathLike, max_new_tokens: int = MAX_NEW_TOKENS):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(os.path.expanduser(str(folder)))
        if not (path / "config.json").is_file():
            raise UserError(f"no text model in {path} (no config.json): give the folder of a local transformers "
                            "causal language model (e.g. a Qwen2.5-Instruct download), or leave out the prompt extender")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as err:
            raise UserError(f"cannot load the text model in {path} ({type(err).__name__}): it needs config.json, "
                            "weights and tokenizer files") from None
        self.max_new_tokens = max_new_tokens

    def _inputs(self, prompt: str):
        text = INSTRUCTION.format(prompt=prompt)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return self.tokenizer(text, return_tensors="pt")

    def __call__(self, prompt: str) -> str:
        import torch

        inputs = self._inputs(prompt)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()


def extend_prompts(prompts: Sequence[str], extender: Any) -> list[str]:
    """Each prompt rewritten by `extender` (a callable str -> str or a local model folder); an empty
    rewrite keeps the original prompt."""
    fn: Callable[[str], str] = extender if callable(extender) else LocalPromptExtender(extender)
    out = []
    for p in prompts:
        new = fn(p)
        if not isinstance(new, str):
            raise UserError(f"the prompt extender returned {type(new).__name__}, not text: it must map str -> str")
        out.append(new.strip() or p)
    return out


__all__ = ["INSTRUCTION", "LocalPromptExtender", "extend_prompts"]
