"""CLIP score of image-text pairs (Hessel et al. 2021, without their w = 2.5 rescaling), with open_clip.

Exactly: each image goes through the model's own preprocessing (resize, centre crop,
normalisation of open_clip's transform for that model) and `encode_image`; each text through the
model's tokenizer and `encode_text`; both embeddings are L2-normalised; the score of a pair is
100 * max(cos(image, text), 0), and `clip_score` reports the mean over pairs (and the per-pair
values). This is the convention of torchmetrics' `CLIPScore` and of most text-to-image papers.

Weights, by `model_name` and `pretrained`:
- a built-in open_clip model name and a pretrained tag (e.g. 'ViT-B-32' + 'openai',
  'ViT-B-32' + 'laion2b_s34b_b79k'): the tag's file, through the zoo's hub resolver
  (`utils.weights.resolve`: the huggingface_hub cache, downloaded when online, HF_HUB_OFFLINE
  honoured, an unreachable hub a one-line error at once); the tag's preprocessing (mean, std,
  interpolation, resize mode) and its activation (QuickGELU for the OpenAI weights) are applied;
- a built-in name and a checkpoint file (`pretrained=<path>`);
- a folder in open_clip's hub layout (`open_clip_config.json` + `open_clip_model.safetensors` or
  `open_clip_pytorch_model.bin`), as `model_name` (or 'local-dir:<folder>'): it brings its own
  weights and preprocessing, and `pretrained` is not used;
- `pretrained=None`: random weights (tests).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from utils.errors import UserError, WeightsError

__all__ = ["CLIPScorer", "clip_score"]


class CLIPScorer:
    """An open_clip model with its preprocessing and tokenizer. `pretrained=None` gives random weights
    (for tests only)."""

    def __init__(self, model_name: str | os.PathLike = "ViT-B-32", pretrained: str | os.PathLike | None = "openai",
                 device: str | torch.device | None = None, batch_size: int = 64):
        import open_clip

        from utils.torch_utils import resolve_device

        self.device = resolve_device(device)
        name, kwargs = _open_clip_arguments(str(model_name), pretrained)
        try:
            # pretrained_text=False: no tower-only weights fetched behind the resolver's back
            model, _, preprocess = open_clip.create_model_and_transforms(name, device=self.device,
                                                                         pretrained_text=False, **kwargs)
        except Exception as err:  # open_clip reports bad files with varied types
            raise WeightsError(f"cannot load open_clip model {model_name} with weights "
                               f"{kwargs.get('pretrained') or 'from its folder'} ({' '.join(str(err).split())[:160]})"
                               ) from None
        self.model = model.eval().requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)
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


def _open_clip_arguments(model_name: str, pretrained: str | os.PathLike | None) -> tuple[str, dict[str, Any]]:
    """(model name for open_clip, keyword arguments of `create_model_and_transforms`), every file local."""
    import open_clip

    folder = Path(os.path.expanduser(model_name.removeprefix("local-dir:")))
    if model_name.startswith("local-dir:") or folder.is_dir():
        if not (folder / "open_clip_config.json").is_file():
            raise WeightsError(f"{folder} is not an open_clip model folder (no open_clip_config.json): pass a "
                               "built-in model name (e.g. ViT-B-32) or a folder in open_clip's hub layout")
        return f"local-dir:{folder}", {}
    if model_name.startswith("hf-hub:"):
        raise UserError(f"'{model_name}': hub folders are read locally here: `hf download "
                        f"{model_name.removeprefix('hf-hub:')}` and pass the folder it prints")
    if model_name not in open_clip.list_models():
        from utils.errors import did_you_mean

        raise UserError(f"unknown open_clip model '{model_name}': {did_you_mean(model_name, open_clip.list_models())}")
    if pretrained is None:
        return model_name, {"pretrained": None}
    if Path(os.path.expanduser(str(pretrained))).is_file():
        return model_name, {"pretrained": os.path.expanduser(str(pretrained))}
    cfg = open_clip.get_pretrained_cfg(model_name, str(pretrained))
    if not cfg:
        tags = [t for m, t in open_clip.list_pretrained() if m == model_name]
        raise WeightsError(f"'{pretrained}' is neither a file nor a pretrained tag of {model_name} "
                           f"(tags: {', '.join(tags) or 'none'}): pass a tag or a checkpoint path")
    try:
        path = _tag_file(cfg)
    except WeightsError as err:
        raise WeightsError(f"open_clip weights {model_name}/{pretrained}: {err}") from None
    kwargs: dict[str, Any] = {"pretrained": str(path), "force_quick_gelu": bool(cfg.get("quick_gelu", False))}
    for key, arg in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"),
                     ("resize_mode", "image_resize_mode")):
        if cfg.get(key) is not None:
            kwargs[arg] = cfg[key]
    return model_name, kwargs


def _tag_file(cfg: dict) -> Path:
    """The local file of an open_clip pretrained tag: its hub file (safetensors first), else its URL."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    from utils.weights import resolve
    from utils.weights.hub import MissingHubFile, fetch_url

    if cfg.get("file"):
        return Path(cfg["file"])
    if not cfg.get("hf_hub"):
        import torch.hub

        url = cfg["url"]
        return fetch_url(url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), os.path.basename(url),
                         instead="or pass pretrained=<checkpoint path>")
    hub = cfg["hf_hub"]  # 'org/repo/file.bin', or 'org/repo/' for open_clip's default file name
    repo, filename = (hub.rstrip("/"), HF_WEIGHTS_NAME) if hub.endswith("/") else os.path.split(hub)
    safe = HF_SAFE_WEIGHTS_NAME if filename == HF_WEIGHTS_NAME else str(Path(filename).with_suffix(".safetensors"))
    errors: list[WeightsError] = []
    for name in dict.fromkeys([safe, filename]):  # safetensors first, as open_clip does
        try:
            return resolve(repo, filename=name)
        except WeightsError as err:
            errors.append(err)
    # Say why the cache could not serve it (offline, unreachable) before saying a name is absent.
    raise next((e for e in errors if not isinstance(e, MissingHubFile)), errors[-1])
