"""A registered model as an endless, reproducible source of images (what FID and IS sample from)."""
from __future__ import annotations

from typing import Any, Callable


def model_source(name: str, preset: str | None = None, weights: str | None = None, device: Any = None,
                 seed: int = 0, modalities: tuple[str, ...] = ("gan", "image")) -> Callable[[int], Any]:
    """`draw(n)` returns the next n images of the model (an ImageOutput).

    A call that follows k images already drawn uses seed `seed + k`: diffusion pipelines give
    image i of a call the seed `seed + i`, so no image is drawn twice, and a GAN gets a fresh
    seed for every batch. The same `seed` and batch sizes give the same images on every run.
    """
    import models
    from models.registry import find_spec

    spec = find_spec(name, modalities)
    pipe = models.load(spec.modality, spec.name, weights=weights, preset=preset, device=device)
    drawn = 0

    def draw(n: int) -> Any:
        nonlocal drawn
        out = pipe(num_images=n, seed=seed + drawn)
        drawn += n
        return out

    return draw
