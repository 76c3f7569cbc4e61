"""Inception Score (Salimans et al. 2016), computed as torch-fidelity computes it.

    from utils.metrics.inception_score import compute_is   # the command line is evaluate/inception_score.py

Exactly: images are quantised to 8 bits, resized to 299 x 299 with TensorFlow 1.x bilinear
resampling and scaled as (v - 128) / 128 (the original TF graph; `--resize pytorch-fid` switches
to pytorch-fid's preprocessing). The class distribution p(y|x) is the softmax of the 1008 logits
of the TF InceptionV3 (`utils/metrics/inception.py`) computed *without the classifier bias*, as in
the original code of Salimans et al. and torch-fidelity's 'logits_unbiased'. The samples are
shuffled with `np.random.RandomState(2020).permutation` (torch-fidelity's default; `--no-shuffle`
keeps the order), cut into `splits` contiguous parts (part i holds samples [i N / s, (i+1) N / s)),
and IS = mean over parts of exp(mean_x KL(p(y|x) || p(y))), with p(y) the mean of the part; the
standard deviation over parts is reported beside it. All of this is float64.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from utils.errors import UserError

__all__ = ["inception_score", "LogitsExtractor", "compute_is"]


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10, shuffle: bool = True,
                    seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of the Inception Score over `splits` parts of (N, classes) logits."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    n = len(x)
    if splits < 1 or n < splits:
        raise UserError(f"Inception Score: {n} images cannot be cut into {splits} splits: use more images or "
                        "fewer --splits")
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    p, log_p = x.softmax(1), x.log_softmax(1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        marginal = p[lo:hi].mean(0, keepdim=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - marginal.log())).sum(1)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


class LogitsExtractor:
    """The FID feature machinery, returning the bias-free 1008 logits instead of pool features."""

    def __init__(self, model: torch.nn.Module | None = None, weights: str | os.PathLike | None = None,
                 device: Any = None, batch_size: int = 50, resize: str = "tf", progress: bool = True,
                 num_workers: int | None = None):
        from utils.metrics.fid import FeatureExtractor
        from utils.metrics.inception import load_inception
        from utils.torch_utils import resolve_device

        if model is None:
            model = load_inception(weights, device=resolve_device(device), resize=resize, need_logits=True)
        self._model = model
        self._features = FeatureExtractor(model=_Logits(model), device=device, batch_size=batch_size,
                                          progress=progress, num_workers=num_workers)

    def logits(self, source: Any, **kw: Any) -> np.ndarray:
        return self._features.features(source, desc="Inception logits", **kw)


class _Logits(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(x, bias=False)


def compute_is(source: Any, splits: int = 10, shuffle: bool = True, seed: int = 2020, **kw: Any) -> tuple[float, float]:
    """IS of a folder / tensor in [0, 1] / list of PIL images / generator callable (`num_samples=`)."""
    num_samples = kw.pop("num_samples", None)
    value_range = kw.pop("value_range", (0.0, 1.0))
    logits = LogitsExtractor(**kw).logits(source, num_samples=num_samples, value_range=value_range)
    return inception_score(logits, splits, shuffle, seed)
