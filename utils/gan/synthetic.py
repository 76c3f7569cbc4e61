"""A class-balanced synthetic image folder from a conditional GAN, optionally filtered by a classifier.

`write_synthetic_folder(pipe, out, per_class, ...)` asks the pipeline for `per_class` images of every
class (seeded: image k of class c always comes from the same noise) and writes

    <out>/<class name>/<class name>_<k>.png
    <out>/metadata.jsonl     {"file_name": "7/7_00012.png", "label": 7, "class": "7", "seed": ..., "confidence": ...}

so that `ImageFolderDataset(out, class_labels=True)` (or any imagefolder reader) reads it back with its
labels. With a `classifier`, an image is kept only when the classifier gives its intended class at least
`min_confidence`; rejected images are replaced by further draws, up to `max_tries` x per_class per class.
The pipeline is any callable `pipe(num_images=, seed=, labels=)` returning an ImageOutput whose `pixels`
are (B, C, H, W) in [0, 1] (the zoo's latent GAN pipelines).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from utils.errors import UserError


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "class"


def write_synthetic_folder(pipe: Any, out: Path, per_class: int, class_names: Sequence[str], seed: int = 0,
                           classifier: torch.nn.Module | None = None, min_confidence: float = 0.9,
                           batch_size: int = 100, max_tries: int = 10, classes: Sequence[int] | None = None,
                           have: dict[int, int] | None = None) -> dict[str, Any]:
    """Write the folder; returns {"written": per class counts, "drawn": per class draws, "metadata": path}.

    `have` (class -> real images already there) turns `per_class` into a target: each class gets only what
    it lacks (the seed's `class_balanced_augmentation`); a class at or above the target gets none."""
    from utils.io import atomic_path
    from utils.visualization.grid import to_pil

    if per_class < 1:
        raise UserError(f"--per-class must be at least 1, got {per_class}")
    if not 0 <= min_confidence <= 1:
        raise UserError(f"--min-confidence must be in [0, 1], got {min_confidence}")
    wanted = list(range(len(class_names))) if classes is None else list(classes)
    out.mkdir(parents=True, exist_ok=True)
    rows, written, drawn = [], {}, {}
    target = per_class
    for c in wanted:
        per_class = max(0, target - (have or {}).get(c, 0))
        name = _safe(str(class_names[c]))
        (out / name).mkdir(exist_ok=True)
        kept, tries = 0, 0
        while kept < per_class and tries < max_tries * per_class:
            n = min(batch_size, max(per_class - kept, 1) if classifier is None else batch_size)
            call_seed = seed * 1_000_003 + c * 10_007 + tries  # each draw of each class its own noise
            result = pipe(num_images=n, seed=call_seed, labels=[c] * n)
            pixels = result.pixels if result.pixels is not None else None
            if pixels is None:
                raise UserError("the generator returned images of different sizes: it cannot fill a dataset")
            tries += n
            conf = None
            if classifier is not None:
                with torch.no_grad():
                    conf = classifier(pixels.float() * 2 - 1).softmax(1)[:, c]
            for i, image in enumerate(to_pil(pixels, (0.0, 1.0))):
                if kept >= per_class:
                    break
                if conf is not None and float(conf[i]) < min_confidence:
                    continue
                file = f"{name}/{name}_{kept:05d}.png"
                with atomic_path(out / file) as tmp:
                    image.save(tmp, format="PNG")
                rows.append({"file_name": file, "label": c, "class": str(class_names[c]), "seed": call_seed,
                             "index": i, **({} if conf is None else {"confidence": round(float(conf[i]), 4)})})
                kept += 1
        written[str(class_names[c])], drawn[str(class_names[c])] = kept, tries
    meta = out / "metadata.jsonl"
    with atomic_path(meta) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {"written": written, "drawn": drawn, "metadata": str(meta)}
