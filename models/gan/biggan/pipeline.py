"""BigGANPipeline: class labels (ints or ImageNet names) + seed + truncation -> images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from models.gan.biggan.config import PRESETS, BigGANConfig
from models.gan.biggan.convert import convert_state_dict, infer_config
from models.gan.biggan.generator import BigGANGenerator
from models.gan.latents import truncated_normal
from models.gan.pipeline_base import LatentGANPipeline
from utils.errors import UserError, did_you_mean
from utils.outputs import ImageOutput
from utils.weights import load_state_dict

WEIGHTS_FILES = ("pytorch_model.bin", "model.safetensors", "biggan.safetensors")


def truncated_noise(shape: tuple[int, ...], truncation: float, generator: torch.Generator,
                    bound: float = 2.0) -> torch.Tensor:
    """truncation * (standard normal truncated to [-bound, bound]), drawn on the CPU.

    The release's samplers draw scipy's truncnorm(-2, 2) and scale it by the truncation; the
    truncated normal is `models.gan.latents.truncated_normal` (the entries outside are redrawn).
    """
    return truncation * truncated_normal(shape, bound, generator)


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names (torchvision's list), index = label."""
    try:
        from torchvision.models._meta import _IMAGENET_CATEGORIES
    except ImportError:  # pragma: no cover - torchvision is a dev dependency
        raise UserError("class names need torchvision's ImageNet list (`pip install torchvision`): "
                        "pass class indices 0..999 instead") from None
    return list(_IMAGENET_CATEGORIES)


def class_index(name: str, num_classes: int) -> int:
    """An ImageNet class from its name: exact (case-insensitive), else the one class containing it."""
    if num_classes != 1000:
        raise UserError(f"class names need an ImageNet model (1000 classes), this one has {num_classes}: "
                        "pass class indices")
    names = [n.lower() for n in imagenet_classes()]
    key = " ".join(name.lower().replace("_", " ").split())
    if key in names:
        return names.index(key)
    hits = [i for i, n in enumerate(names) if key in n]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UserError(f"'{name}' matches {len(hits)} ImageNet classes ({', '.join(names[i] for i in hits[:5])}): "
                        "use the full name or an index")
    raise UserError(f"'{name}' is not an ImageNet class: {did_you_mean(key, names)}")


class BigGANPipeline(LatentGANPipeline):
    """A BigGAN-deep generator ready to sample; `__call__` returns an `ImageOutput`.

    `from_pretrained(source)`: a pytorch_model.bin (config.json beside it), a folder holding both, or a
    hub id (huggingface/biggan-deep-128...); without a source, `preset` names the weights (`tiny`: random).
    On the latent-GAN base; what differs: the release's folder (weights + config.json), truncated
    noise, ImageNet class names or random classes, and the truncation the generator takes.
    """

    model_name = "biggan"
    config_class = BigGANConfig
    presets = PRESETS
    network_class = BigGANGenerator
    weights_files = WEIGHTS_FILES
    config: BigGANConfig

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def read_checkpoint(cls, path: Path, preset: str | None) -> tuple[Path, dict[str, torch.Tensor], BigGANConfig]:
        """The weights file, its tensors and the config: config.json beside the weights, else the preset."""
        weights = cls.checkpoint_file(path)
        cfg_file = weights.parent / "config.json"
        if cfg_file.exists():
            config = BigGANConfig.from_reference_dict(json.loads(cfg_file.read_text()))
            if preset is not None and preset != "tiny" and config != PRESETS[preset]:
                raise UserError(f"the config.json beside {weights.name} does not describe preset '{preset}': "
                                "drop the preset to use the checkpoint's own configuration")
        elif preset is None:
            raise UserError(f"no config.json beside {weights.name}: put the config.json of the release next to it, "
                            f"or name the preset ({', '.join(PRESETS)})")
        else:
            config = PRESETS[preset]
        sd = load_state_dict(weights)
        return weights, sd, infer_config(sd, config)

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: BigGANConfig) -> dict[str, torch.Tensor]:
        return convert_state_dict(state_dict, config)

    # -- sampling --------------------------------------------------------------------------------

    def sample_latents(self, n: int, generator: torch.Generator, truncation: float = 0.4) -> torch.Tensor:
        """(n, z_dim) truncated noise, already scaled by `truncation`."""
        return truncated_noise((n, self.config.z_dim), float(truncation), generator)

    def labels(self, class_labels: int | str | Sequence[int | str] | torch.Tensor | None, n: int,
               generator: torch.Generator) -> torch.Tensor:
        """(n,) long labels from ints, ImageNet names, a mix, or at random; a short list repeats."""
        k = self.config.num_classes
        if class_labels is None:
            return torch.randint(0, k, (n,), generator=generator)
        if isinstance(class_labels, torch.Tensor):
            items = class_labels.flatten().tolist()
        elif isinstance(class_labels, (int, str)):
            items = [class_labels]
        else:
            items = list(class_labels)
        if not items:
            raise UserError("class_labels is empty: pass at least one class, or None for random classes")
        idx = []
        for item in items:
            if isinstance(item, str) and not item.strip().isdigit():
                idx.append(class_index(item, k))
            else:
                i = int(item)
                if not 0 <= i < k:
                    raise UserError(f"class label {i} is out of range: this model has classes 0..{k - 1}")
                idx.append(i)
        t = torch.tensor(idx, dtype=torch.long)
        return t.repeat(-(-n // len(t)))[:n]

    @torch.inference_mode()
    def __call__(self, num_images: int = 4, class_labels: int | str | Sequence[int | str] | None = None,
                 truncation: float = 0.4, seed: int | None = None, latents: torch.Tensor | None = None,
                 batch_size: int = 32, prompt: str | None = None) -> ImageOutput:
        """Sample images. `latents` (B, z_dim) replaces the truncated noise (already scaled);
        `truncation` in (0, 1] scales the noise and picks the batch-norm statistics. `prompt` is a
        class name (or index) for every image, the CLI's `--prompt`."""
        if prompt is not None:
            if class_labels is not None:
                raise UserError("give either a prompt (one class name) or class_labels, not both")
            class_labels = int(prompt) if prompt.strip().isdigit() else prompt
        if not 0.0 < float(truncation) <= 1.0:
            raise UserError(f"truncation must be in (0, 1], got {truncation}: 0.4 is the usual value, 1.0 is none")
        gen = self.noise_generator(seed)
        if latents is None:
            if num_images < 1:
                raise UserError("the number of images must be at least 1")
            latents = self.sample_latents(num_images, gen, truncation)
        elif latents.ndim != 2 or latents.shape[1] != self.config.z_dim:
            raise UserError(f"latents must have shape (batch, {self.config.z_dim}), got {tuple(latents.shape)}")
        y = self.labels(class_labels, latents.shape[0], gen)
        return self.output(self.generate(latents, y, batch_size, float(truncation)), latents=latents, labels=y)
