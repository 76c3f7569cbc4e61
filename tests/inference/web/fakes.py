"""Stand-in models registered only inside tests: a slow GAN (to fill a queue) and a video model (to show that a
newly registered modality gets its tab without touching the demo)."""
from __future__ import annotations

import threading
import time

import numpy as np
import torch
from PIL import Image

from models.spec import ModelSpec
from utils.outputs import ImageOutput, VideoOutput
from utils.torch_utils import make_generator


class SlowPipeline:
    """A latent 'GAN' whose call takes `delay` seconds: each image is its latent, tiled."""

    delay = 0.4
    calls = 0
    lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, source=None, preset=None, device=None, dtype=None):
        return cls()

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, 4), generator=generator)

    def __call__(self, num_images: int = 1, seed: int | None = None, latents: torch.Tensor | None = None) -> ImageOutput:
        with SlowPipeline.lock:
            SlowPipeline.calls += 1
        time.sleep(self.delay)
        z = latents if latents is not None else self.sample_latents(num_images, make_generator(seed))
        pixels = torch.sigmoid(z)[:, None, :, None].expand(-1, 3, 4, 4).contiguous()
        return ImageOutput.from_tensor(pixels, value_range=(0.0, 1.0), latents=z)


class FakeVideoPipeline:
    """Frames that brighten over time; takes an input image, a seed, frames and fps."""

    @classmethod
    def from_pretrained(cls, source=None, preset=None, device=None, dtype=None):
        return cls()

    def __call__(self, image=None, seed: int | None = None, num_frames: int = 4, fps: float = 8.0) -> VideoOutput:
        frames = [Image.fromarray(np.full((16, 16, 3), 40 * t % 256, dtype=np.uint8)) for t in range(num_frames)]
        return VideoOutput([frames], fps=fps)


SLOW = ModelSpec(modality="gan", name="slow_test_gan", package="tests.inference.web",
                 summary="A test stand-in that sleeps.", pipeline="tests.inference.web.fakes:SlowPipeline",
                 presets=("tiny",), default_preset="tiny")
VIDEO = ModelSpec(modality="video", name="fake_video", package="tests.inference.web",
                  summary="A test stand-in video model.", pipeline="tests.inference.web.fakes:FakeVideoPipeline",
                  presets=("tiny",), default_preset="tiny")
