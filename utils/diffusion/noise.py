"""What `seed` means in a diffusion pipeline: image i of a call draws from its own CPU generator.

`seed` gives image i the generator `seed + i`, so image 2 of a batch of four made with seed 5 equals
the single image made with seed 7; a list gives one seed per image. Every draw of a call (initial
noise, the VAE posterior sample of an input image, an ancestral sampler's step noise) takes image
i's noise from generator i. The noise itself is drawn by `utils.torch_utils.randn` (on the CPU in
float32, then moved), the zoo's one implementation of seeded noise.
"""
from __future__ import annotations

from typing import Sequence

import torch

from utils.errors import UserError
from utils.torch_utils import Generators, make_generator, randn


def generators(seed: int | Sequence[int] | None, batch: int | None = None) -> torch.Generator | list[torch.Generator]:
    """One CPU generator per image: seed, seed + 1, ... (a fresh random base when None), or one per
    listed seed; without `batch`, a single generator for `seed`."""
    if isinstance(seed, (list, tuple)):
        if batch is not None and len(seed) != batch:
            raise UserError(f"got {len(seed)} seeds for {batch} images: give one seed or one per image")
        return [make_generator(int(s)) for s in seed]
    if batch is None:
        return make_generator(seed)
    base = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)
    return [make_generator(base + i) for i in range(batch)]


def initial_noise(shape: Sequence[int], seed_or_generator: int | Generators = None, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32, init_sigma: float | torch.Tensor = 1.0) -> torch.Tensor:
    """The starting latents of a sampling run: noise * the scheduler's initial sigma. An int seeds one
    generator per image (`generators(seed, shape[0])`)."""
    gen = seed_or_generator
    if gen is None or isinstance(gen, int):
        gen = generators(gen, shape[0])
    return randn(shape, gen, device, dtype) * init_sigma


__all__ = ["generators", "initial_noise"]
