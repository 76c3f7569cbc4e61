"""CLIP score of image-text pairs (Hessel et al. 2021, without their w = 2.5 rescaling), with open_clip.

Exactly: each image goes through the model's own preprocessing (resize, centre crop,
normalisation of open_clip's transform for that model) and `encode_image`; each text through the
model's tokenizer and `encode_text`; both embeddings are L2-normalised; the score of a pair is
100 * max(cos(image, text), 0), and `clip_score` reports the mean over pairs (and the per-pair
values). This is the convention of torchmetrics' `CLIPScore` and of most text-to-image papers.

Weights: `pretrained` is an open_clip tag (e.g. 'openai', 'laion2b_s34b_b79k'; fetched from
the Hugging Face hub cache, or downloaded when online) or a path to a checkpoint file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from utils.errors import UserError, WeightsError

__all__ = ["CLIPScorer", "clip_score"]


class CLIPScorer:
    """An open_clip model with its preprocessing and tokenizer. `pretrained=None` gives random weights
    (for tests only)."""

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | os.PathLike | None = "openai",
                 device: str | torch.device | None = None, batch_size: int = 64):
        import open_clip

        from utils.torch_utils import resolve_device
        from utils.weights import hub_cache_dir, is_offline

        if model_name not in open_clip.list_models():
            from utils.errors import did_you_mean

            raise UserError(f"unknown open_clip model '{model_name}': {did_you_mean(model_name, open_clip.list_models())}")
        self.device = resolve_device(device)
        if pretrained is not None and not Path(pretrained).exists():
            tags = [t for m, t in open_clip.list_pretrained() if m == model_name]
            if str(pretrained) not in tags:
                raise WeightsError(f"'{pretrained}' is neither a file nor a pretrained tag of {model_name} "
                                   f"(tags: {', '.join(tags) or 'none'}): pass a tag or a checkpoint path")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=str(pretrained) if pretrained is not None else None,
                device=self.device, cache_dir=hub_cache_dir())
        except Exception as err:  # open_clip reports missing files / network errors with varied types
            if pretrained is None or Path(pretrained).exists():
                raise WeightsError(f"cannot load {model_name} weights from {pretrained} "
                                   f"({' '.join(str(err).split())[:160]})") from None
            reason = "offline mode is on (HF_HUB_OFFLINE)" if is_offline() else "they could not be downloaded"
            raise WeightsError(f"open_clip weights {model_name}/{pretrained} are not in the hub cache and {reason}: "
                               "download them once with network, or pass pretrained=<checkpoint path>") from None
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.batch_size = batch_size

    @torch.no_grad()
    def scores(self, images: Sequence, texts: Sequence[str]) -> torch.Tensor:
        """100 * max(cos, 0) for each (image, text) pair; images are PIL images."""
        if len(images) != len(texts):
            raise UserError(f"CLIP score needs one text per image, got {len(images)} images and {len(texts)} texts")
        if len(images) == 0:
            raise UserError("CLIP score: no image-text pairs given")
        out = []
        for i in range(0, len(images), self.batch_size):
            ims = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + self.batch_size]])
            tok = self.tokenizer(list(texts[i:i + self.batch_size]))
            fi = self.model.encode_image(ims.to(self.device)).float()
            ft = self.model.encode_text(tok.to(self.device)).float()
            cos = torch.nn.functional.cosine_similarity(fi, ft, dim=-1)
            out.append(100 * cos.clamp_min(0))
        return torch.cat(out).cpu()

    def __call__(self, images: Sequence, texts: Sequence[str]) -> float:
        return float(self.scores(images, texts).mean())


def clip_score(images: Sequence, texts: Sequence[str], model_name: str = "ViT-B-32",
               pretrained: str | os.PathLike | None = "openai", device: str | None = None) -> float:
    """Mean CLIP score of the pairs (see the module docstring)."""
    return CLIPScorer(model_name, pretrained, device)(images, texts)
