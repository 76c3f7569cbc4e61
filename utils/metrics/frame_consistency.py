"""Frame consistency: how alike consecutive frames look to CLIP (the temporal-consistency score of
text-to-video papers, e.g. Esser et al. 2023, Gen-1).

Exactly: every frame goes through an open_clip model's own preprocessing and `encode_image`
(`utils.metrics.clip_score.CLIPScorer` loads it: a model name and pretrained tag, a checkpoint,
or a local open_clip folder); the embeddings are L2-normalised; a video's score is the mean cosine
similarity of frames t and t + 1 over its T - 1 pairs, times 100; `frame_consistency` reports the
mean over videos and each video's score. 100 is a still image; lower is less consistent.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from utils.errors import UserError


def frame_embeddings(frames: Sequence[Any], scorer: Any, batch_size: int = 64) -> torch.Tensor:
    """(T, D) L2-normalised CLIP image embeddings of PIL frames."""
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            ims = torch.stack([scorer.preprocess(f.convert("RGB")) for f in frames[i:i + batch_size]])
            out.append(torch.nn.functional.normalize(scorer.model.encode_image(ims.to(scorer.device)).float(), dim=-1))
    return torch.cat(out).cpu()


def consistency_of(embeddings: torch.Tensor) -> float:
    """100 x the mean cosine similarity of consecutive rows of (T, D) normalised embeddings."""
    if embeddings.shape[0] < 2:
        raise UserError("frame consistency needs videos of at least 2 frames")
    return float(100 * (embeddings[1:] * embeddings[:-1]).sum(-1).mean())


def frame_consistency(videos: Sequence[Sequence[Any]], scorer: Any) -> tuple[float, list[float]]:
    """(mean score, per-video scores) of videos given as lists of PIL frames."""
    if not videos:
        raise UserError("frame consistency: no videos given")
    per = [consistency_of(frame_embeddings(list(v), scorer)) for v in videos]
    return sum(per) / len(per), per


__all__ = ["consistency_of", "frame_consistency", "frame_embeddings"]
