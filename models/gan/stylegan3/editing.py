"""Semantic directions in StyleGAN's W space, and editing with them.

- GANSpace (Härkönen et al. 2020): PCA of w = f(z) over many z; the principal directions are edits
  (pose, lighting, age... in the first ones), their standard deviations a natural unit of strength.
- InterFaceGAN (Shen et al. 2020): a linear classifier (linear SVM) on w against binary labels; the unit
  normal of its boundary is the direction of the attribute. Labels come from any classifier the user
  supplies (`label_samples`: images -> scores; the top and bottom `ratio` of the scores are the two
  classes), or directly (`interfacegan(ws, labels)`). `orthogonal_to` removes another attribute's
  direction (InterFaceGAN's conditional manipulation).
- `apply_direction(ws, d, strength, layers)` moves ws along d (in units of d's scale) on a range of styles.

Directions are saved as small safetensors files (`Directions.save` / `Directions.load`).

    from models.gan.stylegan3.editing import Directions, apply_direction, ganspace
    dirs = ganspace(pipe, num_components=10)
    ws = pipe.map(pipe.seed_latents([0]))
    pipe(ws=apply_direction(ws, dirs, "pc0", strength=3.0, layers=range(0, 8))).save("pc0.png")
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from utils.errors import UserError, WeightsError

Tensor = torch.Tensor

__all__ = ["Directions", "ganspace", "interfacegan", "label_samples", "interfacegan_from_classifier",
           "apply_direction", "sample_w"]


@dataclass
class Directions:
    """Unit directions (k, w_dim) in W, with names; `scales` (k,) is the unit of strength of each (GANSpace:
    the std of w along it; 1 otherwise); `mean` the centre of the sampled w; `offsets` InterFaceGAN's
    boundary offsets (w . n + offset = 0 on the boundary)."""

    vectors: Tensor
    names: tuple[str, ...]
    scales: Tensor | None = None
    mean: Tensor | None = None
    offsets: Tensor | None = None
    method: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.names) != self.vectors.shape[0]:
            raise ValueError("Directions: vectors (k, w_dim) and k names")
        if self.scales is None:
            self.scales = torch.ones(self.vectors.shape[0])

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def index(self, name: str | int) -> int:
        if isinstance(name, int):
            if not 0 <= name < len(self):
                raise UserError(f"direction {name} does not exist: the file has {len(self)} (0..{len(self) - 1})")
            return name
        if name not in self.names:
            from utils.errors import did_you_mean

            raise UserError(f"no direction '{name}' here: {did_you_mean(name, self.names)}")
        return self.names.index(name)

    def vector(self, name: str | int) -> Tensor:
        """The direction scaled by its unit (so strength 1 moves one standard deviation for GANSpace)."""
        i = self.index(name)
        return self.vectors[i] * self.scales[i]

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        from utils.io import atomic_path

        tensors = {"vectors": self.vectors.float().contiguous(), "scales": self.scales.float().contiguous()}
        if self.mean is not None:
            tensors["mean"] = self.mean.float().contiguous()
        if self.offsets is not None:
            tensors["offsets"] = self.offsets.float().contiguous()
        meta = {"format": "cv-generative/stylegan-directions", "names": json.dumps(list(self.names)),
                "method": self.method, "info": json.dumps(self.info)}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Directions":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"directions file not found: {path}")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own error types for bad files
            raise WeightsError(f"{path.name} is not a readable safetensors file ({type(err).__name__}): pass a "
                               "directions file written by Directions.save") from None
        if meta.get("format") != "cv-generative/stylegan-directions" or "vectors" not in tensors:
            raise WeightsError(f"{path.name} is not a StyleGAN directions file (written by Directions.save)")
        return cls(tensors["vectors"], tuple(json.loads(meta["names"])), tensors.get("scales"), tensors.get("mean"),
                   tensors.get("offsets"), meta.get("method", ""), json.loads(meta.get("info", "{}")))


@torch.no_grad()
def sample_w(pipe, num_samples: int, seed: int = 0, batch_size: int = 1000, truncation: float = 1.0,
             labels: int | None = None) -> tuple[Tensor, Tensor]:
    """(z, w): `num_samples` z from `seed` and their w (N, w_dim) through the mapping network."""
    gen = torch.Generator().manual_seed(int(seed))
    z = torch.randn(num_samples, pipe.config.z_dim, generator=gen)
    y = None
    if pipe.config.num_classes:
        y = torch.full((num_samples,), int(labels or 0)) if labels is not None else \
            torch.randint(0, pipe.config.num_classes, (num_samples,), generator=gen)
    ws = torch.cat([pipe.map(z[i:i + batch_size], None if y is None else y[i:i + batch_size], truncation)[:, 0]
                    for i in range(0, num_samples, batch_size)])
    return z, ws


def ganspace(pipe, num_components: int = 20, num_samples: int = 10_000, seed: int = 0,
             batch_size: int = 1000) -> Directions:
    """The first `num_components` principal directions of w, each with its standard deviation as unit;
    a direction's sign is fixed so that its largest entry is positive (the same file every run)."""
    if num_components < 1 or num_components > pipe.config.w_dim:
        raise UserError(f"GANSpace takes 1..{pipe.config.w_dim} components (w has {pipe.config.w_dim} dimensions), "
                        f"got {num_components}")
    if num_samples <= num_components:
        raise UserError(f"GANSpace needs more samples ({num_samples}) than components ({num_components})")
    _, w = sample_w(pipe, num_samples, seed, batch_size)
    w = w.double()
    mean = w.mean(0)
    _, s, vt = torch.linalg.svd(w - mean, full_matrices=False)
    vt = vt[:num_components]
    signs = torch.sign(vt.gather(1, vt.abs().argmax(1, keepdim=True)))
    vt = vt * signs
    scales = s[:num_components] / (num_samples - 1) ** 0.5
    names = tuple(f"pc{i}" for i in range(num_components))
    return Directions(vt.float(), names, scales.float(), mean.float(), method="ganspace",
                      info={"num_samples": num_samples, "seed": seed,
                            "explained_variance": (s[:num_components] ** 2 / (s ** 2).sum()).tolist()})


def interfacegan(ws: Tensor, labels: Sequence[int] | Tensor, name: str = "attribute", C: float = 1.0,
                 orthogonal_to: Tensor | Iterable[Tensor] | None = None) -> Directions:
    """The unit normal of a linear SVM separating w (N, w_dim) with label 1 from label 0, pointing to 1."""
    from sklearn.svm import LinearSVC

    y = torch.as_tensor(labels).flatten().long()
    if ws.ndim == 3:
        ws = ws[:, 0]
    if ws.ndim != 2 or len(y) != ws.shape[0]:
        raise UserError(f"InterFaceGAN takes w of shape (N, w_dim) and N labels, got {tuple(ws.shape)} and {len(y)}")
    if set(y.tolist()) != {0, 1}:
        raise UserError("InterFaceGAN needs binary labels with both classes present (0 and 1)")
    svm = LinearSVC(C=C, max_iter=20_000, dual="auto")
    svm.fit(ws.double().numpy(), y.numpy())
    normal = torch.as_tensor(svm.coef_[0], dtype=torch.float64)
    offset = float(svm.intercept_[0]) / normal.norm().item()
    normal = normal / normal.norm()
    if orthogonal_to is not None:
        others = [orthogonal_to] if isinstance(orthogonal_to, Tensor) and orthogonal_to.ndim == 1 else list(orthogonal_to)
        basis = torch.linalg.qr(torch.stack([o.double().flatten() for o in others]).t())[0]  # orthonormal span
        normal = normal - basis @ (basis.t() @ normal)
        normal = normal / normal.norm()
    accuracy = float(svm.score(ws.double().numpy(), y.numpy()))
    return Directions(normal.float()[None], (name,), torch.ones(1), ws.mean(0).float(), torch.tensor([offset]),
                      method="interfacegan", info={"train_accuracy": accuracy, "num_samples": len(y)})


@torch.no_grad()
def label_samples(pipe, classifier: Callable[[Tensor], Tensor], num_samples: int = 2000, ratio: float = 0.2,
                  seed: int = 0, batch_size: int = 16, truncation: float = 1.0) -> tuple[Tensor, Tensor]:
    """(w, labels): images generated from `num_samples` seeded w, scored by `classifier` ((B, C, H, W) in [-1, 1]
    -> (B,) scores, higher = more of the attribute); the top `ratio` are 1, the bottom `ratio` 0."""
    if not 0 < ratio <= 0.5:
        raise UserError(f"ratio is the share of samples in each class, in (0, 0.5], got {ratio}")
    _, w = sample_w(pipe, num_samples, seed, truncation=truncation)
    scores = torch.cat([torch.as_tensor(classifier(pipe.synthesize(w[i:i + batch_size], batch_size=batch_size)))
                        .flatten().float() for i in range(0, num_samples, batch_size)])
    if scores.shape[0] != num_samples:
        raise UserError(f"the classifier returned {scores.shape[0]} scores for {num_samples} images: it must return "
                        "one score per image")
    k = max(1, int(num_samples * ratio))
    order = scores.argsort()
    keep = torch.cat([order[:k], order[-k:]])
    labels = torch.cat([torch.zeros(k, dtype=torch.long), torch.ones(k, dtype=torch.long)])
    return w[keep], labels


def interfacegan_from_classifier(pipe, classifier: Callable[[Tensor], Tensor], name: str = "attribute",
                                 num_samples: int = 2000, ratio: float = 0.2, seed: int = 0, C: float = 1.0,
                                 orthogonal_to: Tensor | Iterable[Tensor] | None = None) -> Directions:
    """InterFaceGAN end to end: generate, score with the user's classifier, fit the boundary."""
    w, labels = label_samples(pipe, classifier, num_samples, ratio, seed)
    return interfacegan(w, labels, name, C, orthogonal_to)


def apply_direction(ws: Tensor, directions: Directions | Tensor, name: str | int = 0, strength: float = 1.0,
                    layers: Iterable[int] | None = None) -> Tensor:
    """ws (B, num_ws, w_dim) (or (B, w_dim)) moved by strength x the direction on the styles `layers` (all by
    default); with a `Directions`, strength counts in the direction's unit (GANSpace: standard deviations)."""
    d = directions.vector(name) if isinstance(directions, Directions) else torch.as_tensor(directions).flatten()
    d = d.to(ws)
    if ws.shape[-1] != d.shape[0]:
        raise UserError(f"the direction has {d.shape[0]} dimensions but w has {ws.shape[-1]}: it belongs to another "
                        "network")
    if ws.ndim == 2:
        if layers is not None:
            raise UserError("layers select styles of W+ codes (B, num_ws, w_dim); these ws have no style axis")
        return ws + strength * d
    out = ws.clone()
    idx = list(range(ws.shape[1])) if layers is None else list(layers)
    if any(not 0 <= i < ws.shape[1] for i in idx):
        raise UserError(f"layers must lie in 0..{ws.shape[1] - 1}, got {idx}")
    out[:, idx] = out[:, idx] + strength * d
    return out
