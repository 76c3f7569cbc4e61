"""Prompt upsampling: DALL-E 3 turns a short user prompt into the long, descriptive kind of caption its
model was trained on (Betker et al. 2023, sec. 2-3 and appendix C: images were recaptioned with
descriptive synthetic captions, and at sampling time a chat model rewrites the user's prompt into one).

Two `PromptRewriter`s:

- `TemplateRewriter` (the default, and the one the tests use): deterministic. The prompt is tidied
  (whitespace collapsed, first letter upper-cased, one final full stop) and one fixed sentence of
  visual detail is appended; the sentence depends only on the medium the prompt names:

      photo, photograph, photographic, snapshot, portrait -> TEMPLATES["photo"]
      painting, painted, oil, watercolor/watercolour      -> TEMPLATES["painting"]
      drawing, sketch, illustration, cartoon, comic        -> TEMPLATES["illustration"]
      render, 3d, cgi                                      -> TEMPLATES["render"]
      (none of these)                                      -> TEMPLATES["default"]

  A prompt already as long as `max_words` words is returned tidied but otherwise unchanged.
- `CausalLMRewriter`: a local instruction-tuned causal language model through transformers (a repo id
  or a folder, loaded offline from the cache: `local_files_only`). It is asked, with the instruction
  `INSTRUCTION` (through the tokenizer's chat template when it has one), for a detailed caption, decoded
  greedily so the same prompt gives the same rewrite. An empty answer falls back to the template.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol, runtime_checkable

from utils.errors import UserError

TEMPLATES = {
    "photo": "A high-resolution photograph with natural lighting, sharp focus on the subject, a realistic "
             "depth of field and true-to-life colours and textures.",
    "painting": "A finished painting with visible brushwork, a considered composition, a harmonious palette "
                "and soft, directional light.",
    "illustration": "A clean illustration with confident linework, clear shapes, a balanced composition and a "
                    "consistent colour palette.",
    "render": "A detailed 3D render with physically based materials, soft global illumination and crisp "
              "reflections.",
    "default": "A detailed, well-composed image with clear lighting and rich, accurate colours and textures, "
               "showing every element of the description.",
}
"""The fixed sentences the template appends, by medium."""

MEDIUM_WORDS = (("photo", ("photo", "photograph", "photographic", "snapshot", "portrait")),
                ("painting", ("painting", "painted", "oil", "watercolor", "watercolour")),
                ("illustration", ("drawing", "sketch", "illustration", "cartoon", "comic")),
                ("render", ("render", "3d", "cgi")))
"""Words that pick a template, checked in this order."""

INSTRUCTION = ("You rewrite short prompts for an image generator into one detailed caption. Keep every object, "
               "name, number and quoted text of the prompt; add the setting, composition, lighting, colours and "
               "style; answer with the caption only, in one paragraph of at most 80 words.")
"""What the language model is asked (in our words, after DALL-E 3's appendix C)."""


@runtime_checkable
class PromptRewriter(Protocol):
    """Anything that turns a user prompt into the prompt the image model is given."""

    def rewrite(self, prompt: str) -> str:
        ...


def tidy(prompt: str) -> str:
    """Whitespace collapsed, the first letter upper-cased, ending in one full stop (or its own ! or ?)."""
    text = " ".join(prompt.split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


class TemplateRewriter:
    """The deterministic fallback; see the module docstring for the template."""

    name = "template"

    def __init__(self, max_words: int = 40):
        self.max_words = max_words

    @staticmethod
    def medium(prompt: str) -> str:
        words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
        for medium, keys in MEDIUM_WORDS:
            if words.intersection(keys):
                return medium
        return "default"

    def rewrite(self, prompt: str) -> str:
        text = tidy(prompt)
        if not text or len(text.split()) >= self.max_words:
            return text
        return f"{text} {TEMPLATES[self.medium(prompt)]}"


class CausalLMRewriter:
    """A local causal language model (transformers) that writes the detailed caption; greedy, offline."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 120, name: str = "causal-lm"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.name = name
        self.fallback = TemplateRewriter()

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike, device: str | None = None, dtype: str | None = None,
                        max_new_tokens: int = 120) -> "CausalLMRewriter":
        """A repo id (from the local cache: nothing downloads here) or a folder of a transformers causal LM."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from utils.torch_utils import resolve_device, resolve_dtype

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.bfloat16)
        where = str(Path(os.path.expanduser(str(source)))) if Path(os.path.expanduser(str(source))).exists() \
            else str(source)
        try:
            tok = AutoTokenizer.from_pretrained(where, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(where, local_files_only=True, torch_dtype=dt)
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"cannot load the rewrite model '{source}' ({first}): give a local folder of a "
                            "transformers causal LM, or download the repo first with `hf download "
                            f"{source}`") from None
        return cls(model.to(dev), tok, max_new_tokens, name=str(source))

    def _inputs(self, prompt: str):
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            messages = [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": prompt}]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{INSTRUCTION}\nPrompt: {prompt}\nCaption:"
        return tok(text, return_tensors="pt")

    def rewrite(self, prompt: str) -> str:
        import torch

        inputs = {k: v.to(self.model.device) for k, v in self._inputs(prompt).items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      pad_token_id=pad)
        new = out[0, inputs["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        text = " ".join(text.split("\n\n")[0].split()) if text else ""
        return text or self.fallback.rewrite(prompt)


def load_rewriter(source: "str | os.PathLike | PromptRewriter | None", device: str | None = None,
                  dtype: str | None = None) -> PromptRewriter:
    """None -> the template; a PromptRewriter as it is; else a causal LM (repo id or folder)."""
    if source is None:
        return TemplateRewriter()
    if isinstance(source, PromptRewriter):
        return source
    return CausalLMRewriter.from_pretrained(source, device=device, dtype=dtype)


__all__ = ["CausalLMRewriter", "INSTRUCTION", "MEDIUM_WORDS", "PromptRewriter", "TEMPLATES", "TemplateRewriter",
           "load_rewriter", "tidy"]
