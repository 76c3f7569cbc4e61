"""What every latent-to-image GAN pipeline shares: presets, weights, labels, seeded batches.

A model package subclasses `LatentGANPipeline` and names its config class, generator class
and converter; everything a user passes (seed, number of images, class prompt, latents, size)
is handled here once.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn

from utils.outputs import ImageOutput
from models.registry import get_spec
from utils.errors import UserError, did_you_mean
from utils.torch_utils import make_generator, randn, resolve_device, resolve_dtype
from utils.weights import load_into, load_state_dict, read_safetensors_config, resolve

REPO_ROOT = Path(__file__).resolve().parents[2]


class LatentGANPipeline:
    """Generator + config; `__call__` turns (seed, count, class prompt) into images."""

    model_name: ClassVar[str]
    """The registry name (also the modality 'gan')."""
    config_class: ClassVar[type]
    presets: ClassVar[dict[str, Any]]
    generator_class: ClassVar[Callable[[Any], nn.Module]]

    def __init__(self, generator: nn.Module, config: Any, device: torch.device, dtype: torch.dtype):
        self.generator = generator.to(device=device, dtype=dtype).eval()
        self.config = config
        self.device, self.dtype = device, dtype

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
        """Map a checkpoint to the native generator layout (packages override for their formats)."""
        return state_dict

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> Any | None:
        """A config read off the tensor shapes of a checkpoint, when the format allows it."""
        return None

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None,
                        device: str | None = None, dtype: str | torch.dtype | None = None) -> "LatentGANPipeline":
        """Random weights for `preset='tiny'`; else the given source or the preset's registered weights."""
        spec = get_spec("gan", cls.model_name)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        spec.check_preset(preset)
        if source is None:
            preset = preset or spec.default_preset
            if preset == "tiny":
                torch.manual_seed(0)
                return cls(cls.generator_class(cls.presets[preset]), cls.presets[preset], dev, dt)
            registered = spec.weights_for(preset)
            if registered is None:
                raise UserError(f"no weights are registered for {cls.model_name} preset '{preset}': pass --weights "
                                f"with a checkpoint file, or use --preset tiny for random weights")
            source = registered.source
        path = cls._resolve_source(source)
        sd = load_state_dict(path)
        config = read_safetensors_config(path, cls.config_class) or cls.infer_config(sd)
        if config is None:
            config = cls.presets[preset or spec.default_preset]
        elif preset is not None and preset != "tiny" and asdict(config) != asdict(cls.presets[preset]):
            raise UserError(f"the weights in {path.name} do not fit {cls.model_name} preset '{preset}': "
                            "drop --preset to use the checkpoint's own configuration")
        with torch.device("meta"):
            gen = cls.generator_class(config)
        load_into(gen, cls.convert(sd, config), what=f"{cls.model_name} checkpoint {path.name}")
        return cls(gen, config, dev, dt)

    @staticmethod
    def _resolve_source(source: str | Path) -> Path:
        text = str(source)
        if text.startswith("package:"):
            return REPO_ROOT / text.removeprefix("package:")
        path = resolve(text)
        if path.is_dir():
            candidates = sorted(p for p in path.iterdir() if p.suffix in {".safetensors", ".pth", ".pt", ".bin"})
            if len(candidates) != 1:
                raise UserError(f"{path} holds {len(candidates)} checkpoint files: pass the file itself")
            path = candidates[0]
        return path

    # -- generating ------------------------------------------------------------------------------

    @property
    def class_names(self) -> Sequence[str]:
        return getattr(self.config, "class_names", ()) or ()

    def labels_from(self, prompt: str | None, labels: Sequence[int] | int | None, n: int,
                    gen: torch.Generator) -> torch.Tensor | None:
        """Class labels from a prompt (a class name), explicit ints, or uniformly at random."""
        num_classes = getattr(self.config, "num_classes", 0)
        if num_classes == 0:
            if prompt is not None or labels is not None:
                raise UserError(f"{self.model_name} with this configuration is unconditional: it takes no "
                                "prompt or class label")
            return None
        if prompt is not None:
            names = list(self.class_names) or [str(i) for i in range(num_classes)]
            key = prompt.strip().lower()
            if key not in names:
                raise UserError(f"'{prompt}' is not a class of this {self.model_name}: {did_you_mean(key, names)}")
            return torch.full((n,), names.index(key), dtype=torch.long)
        if labels is not None:
            t = torch.as_tensor(labels, dtype=torch.long).flatten()
            t = t.repeat(-(-n // len(t)))[:n]
            if (t < 0).any() or (t >= num_classes).any():
                raise UserError(f"class labels must lie in 0..{num_classes - 1}")
            return t
        # no class asked for: cycle through the classes so a grid shows each of them
        return torch.arange(n) % num_classes

    def sample_latents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return randn((n, *self.generator.latent_shape), generator)

    def check_size(self, height: int | None, width: int | None) -> None:
        size = self.config.image_size
        for name, v in (("height", height), ("width", width)):
            if v is not None and v != size:
                raise UserError(f"this {self.model_name} generates {size}x{size} images: --{name} must be {size} "
                                "or left out")

    @torch.inference_mode()
    def __call__(self, num_images: int = 16, seed: int | None = None, prompt: str | None = None,
                 labels: Sequence[int] | int | None = None, latents: torch.Tensor | None = None,
                 height: int | None = None, width: int | None = None, batch_size: int = 256,
                 steps: int | None = None) -> ImageOutput:
        """Generate `num_images` images; the same seed gives the same images on any device."""
        if steps is not None:
            raise UserError(f"{self.model_name} is a GAN and generates in one forward pass: --steps does not apply")
        if num_images < 1:
            raise UserError("the number of images must be at least 1")
        self.check_size(height, width)
        gen = make_generator(seed)
        if latents is None:
            latents = self.sample_latents(num_images, gen)
        num_images = latents.shape[0]
        y = self.labels_from(prompt, labels, num_images, gen)
        chunks = []
        for i in range(0, num_images, batch_size):
            z = latents[i:i + batch_size].to(self.device, self.dtype)
            yy = None if y is None else y[i:i + batch_size].to(self.device)
            chunks.append(self.generator(z, yy).float().cpu())
        return ImageOutput.from_tensor(torch.cat(chunks), latents=latents, labels=y)
