"""The GAN pipelines' two base classes.

`GANPipeline` is what every GAN pipeline of the zoo shares: the registry spec and its presets, the
device and dtype, where the weights come from (random for the `tiny` preset, the preset's registered
source, a `package:` path, a local file or folder, a hub repo id through `utils.weights`), strict
loading into a network built on the meta device, the seeded CPU generator of a call, and the
`ImageOutput` of images in [-1, 1].

`LatentGANPipeline` is the latent-to-image specialisation: latents (and class labels) in, images out,
in batches. DCGAN, the vanilla GAN, WGAN-GP, Progressive GAN and BigGAN sit on it; VQGAN (images <->
code indices) and CycleGAN (image-to-image) sit on `GANPipeline` directly.

A package names its config class, presets and network class, and overrides only what differs:

    infer_config / convert    a config read off a checkpoint's shapes, its keys mapped to the native layout
    read_state_dict           a file format that needs its own reader (pytorch_GAN_zoo's pickled config)
    read_checkpoint           where the config comes from (BigGAN's config.json, VQGAN's folders)
    check_fit                 whether a checkpoint's config must equal the preset named with it
    missing_weights           the error for a preset that has no registered weights

Construction contract: `cls(network, config, device, dtype, **options)`, where `options` are the
pipeline's own loading options (CycleGAN's `direction`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from models.registry import get_spec
from models.spec import REPO_ROOT, ModelSpec
from utils.errors import UserError, did_you_mean
from utils.outputs import ImageOutput
from utils.torch_utils import make_generator, randn, resolve_device, resolve_dtype
from utils.weights import load_into, load_state_dict, read_safetensors_config, resolve

CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
"""The files a weights folder is searched for when the pipeline names no preferred file."""


class GANPipeline:
    """What every GAN pipeline shares: loading (`from_pretrained`), a seeded generator, the output.

    A subclass is built as `cls(network, config, device, dtype, **options)` and keeps its network under
    its own name (`self.generator = self.place(generator)`; VQGAN's `self.model`).
    """

    model_name: ClassVar[str]
    """The registry name (modality 'gan')."""
    config_class: ClassVar[type]
    """The config dataclass (read from a native checkpoint's metadata)."""
    presets: ClassVar[Mapping[str, Any]]
    """Preset name -> config."""
    network_class: ClassVar[Callable[[Any], nn.Module]]
    """Builds the pipeline's network from a config."""
    weights_files: ClassVar[tuple[str, ...]] = ()
    """File names looked for, in order, in a weights folder; empty: the folder must hold one checkpoint."""

    def __init__(self, config: Any, device: torch.device, dtype: torch.dtype):
        self.config = config
        self.device, self.dtype = device, dtype

    def place(self, network: nn.Module) -> nn.Module:
        """`network` on the pipeline's device and dtype, in eval mode."""
        return network.to(device=self.device, dtype=self.dtype).eval()

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def spec(cls) -> ModelSpec:
        return get_spec("gan", cls.model_name)

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None,
                        device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "GANPipeline":
        """Random weights for `preset='tiny'`; else the given source or the preset's registered weights."""
        return cls._load_pipeline(source, preset, device, dtype)

    @classmethod
    def _load_pipeline(cls, source: str | Path | None, preset: str | None, device: str | torch.device | None,
                       dtype: str | torch.dtype | None, **options: Any) -> "GANPipeline":
        """The shared preamble of `from_pretrained`: device, dtype, preset check, then the source."""
        spec = cls.spec()
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        spec.check_preset(preset)
        if source is None:
            preset = preset or spec.default_preset
            if preset == "tiny":
                return cls.random(preset, dev, dt, **options)
            source = cls.registered_source(preset)
        return cls.from_source(source, preset, dev, dt, **options)

    @classmethod
    def random(cls, preset: str, device: torch.device, dtype: torch.dtype, **options: Any) -> "GANPipeline":
        """The preset's network with random weights, the same on every call (the tests' `tiny`)."""
        from utils.torch_utils import local_seed

        config = cls.presets[preset]
        with local_seed(0):  # a generator of its own: the same weights whatever other threads draw
            return cls(cls.network_class(config), config, device, dtype, **options)

    @classmethod
    def registered_source(cls, preset: str) -> str:
        registered = cls.spec().weights_for(preset)
        if registered is None:
            raise cls.missing_weights(preset)
        return registered.source

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        """The error for a preset without registered weights and no source given."""
        return UserError(f"no weights are registered for {cls.model_name} preset '{preset}': pass --weights "
                         f"with a checkpoint file, or use --preset tiny for random weights")

    @classmethod
    def from_source(cls, source: str | Path, preset: str | None, device: torch.device, dtype: torch.dtype,
                    **options: Any) -> "GANPipeline":
        """Read, convert and strictly load the checkpoint at `source`; an error names the file."""
        path = cls.resolve_source(source)
        try:
            file, state_dict, config = cls.read_checkpoint(path, preset, **options)
            network = cls.load_network(config, cls.convert(state_dict, config, **options), file)
        except UserError as err:
            if path.name in str(err):
                raise
            raise type(err)(f"{path.name}: {err}") from None
        return cls(network, config, device, dtype, **options)

    @staticmethod
    def resolve_source(source: str | Path) -> Path:
        """A local path for a `package:` path (weights shipped in the repo), a file, a folder or a hub id."""
        text = str(source)
        if text.startswith("package:"):
            return REPO_ROOT / text.removeprefix("package:")
        return resolve(text)

    @classmethod
    def checkpoint_file(cls, path: Path) -> Path:
        """`path` itself, or the checkpoint inside a folder: the first of `weights_files`, else the only one."""
        if not path.is_dir():
            return path
        if cls.weights_files:
            found = next((path / f for f in cls.weights_files if (path / f).exists()), None)
            if found is None:
                raise UserError(f"no {cls.model_name} weights in {path}: expected one of "
                                f"{', '.join(cls.weights_files)}")
            return found
        candidates = sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        if len(candidates) != 1:
            raise UserError(f"{path} holds {len(candidates)} checkpoint files: pass the file itself")
        return candidates[0]

    @classmethod
    def read_state_dict(cls, file: Path) -> dict[str, torch.Tensor]:
        return load_state_dict(file)

    @classmethod
    def read_checkpoint(cls, path: Path, preset: str | None,
                        **options: Any) -> tuple[Path, dict[str, torch.Tensor], Any]:
        """(the file, its tensors, the config): the config stored in a native file, else the one read off
        the shapes (`infer_config`), else the preset's."""
        file = cls.checkpoint_file(path)
        state_dict = cls.read_state_dict(file)
        config = read_safetensors_config(file, cls.config_class) or cls.infer_config(state_dict, **options)
        if config is None:
            return file, state_dict, cls.presets[preset or cls.spec().default_preset]
        cls.check_fit(config, preset, file)
        return file, state_dict, config

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor], **options: Any) -> Any | None:
        """A config read off the tensor shapes of a checkpoint, when the format allows it."""
        return None

    @classmethod
    def check_fit(cls, config: Any, preset: str | None, file: Path) -> None:
        """A checkpoint named together with a preset must be that preset."""
        if preset is not None and preset != "tiny" and asdict(config) != asdict(cls.presets[preset]):
            raise UserError(f"the weights in {file.name} do not fit {cls.model_name} preset '{preset}': "
                            "drop --preset to use the checkpoint's own configuration")

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: Any, **options: Any) -> dict[str, torch.Tensor]:
        """Map a checkpoint to the native layout (packages override for their formats)."""
        return state_dict

    @classmethod
    def load_network(cls, config: Any, state_dict: dict[str, torch.Tensor], file: Path) -> nn.Module:
        """The network built on the meta device and given the tensors; every key and shape is checked."""
        with torch.device("meta"):
            network = cls.network_class(config)
        load_into(network, state_dict, what=f"{cls.model_name} checkpoint {file.name}")
        return network

    # -- running ---------------------------------------------------------------------------------

    @staticmethod
    def noise_generator(seed: int | None) -> torch.Generator:
        """The call's CPU generator: a call draws all its noise from it in order, so one seed gives the
        same images on any device (None: a fresh random seed)."""
        return make_generator(seed)

    @staticmethod
    def output(images: torch.Tensor | Sequence[torch.Tensor], **fields: Any) -> ImageOutput:
        """An `ImageOutput` of images in [-1, 1]: a (B, C, H, W) tensor, or (C, H, W) tensors of any sizes
        (their `pixels` stay None when the sizes differ)."""
        if isinstance(images, torch.Tensor):
            return ImageOutput.from_tensor(images, **fields)
        if len({tuple(x.shape) for x in images}) == 1:
            return ImageOutput.from_tensor(torch.stack(list(images)), **fields)
        return ImageOutput([ImageOutput.from_tensor(x[None]).images[0] for x in images], **fields)


class LatentGANPipeline(GANPipeline):
    """A generator of latents (and class labels) -> images; `__call__` takes (seed, count, class prompt)."""

    def __init__(self, generator: nn.Module, config: Any, device: torch.device, dtype: torch.dtype):
        super().__init__(config, device, dtype)
        self.generator = self.place(generator)

    @property
    def class_names(self) -> Sequence[str]:
        return getattr(self.config, "class_names", ()) or ()

    def labels_from(self, prompt: str | None, labels: Sequence[int] | int | None, n: int,
                    gen: torch.Generator) -> torch.Tensor | None:
        """Class labels from a prompt (a class name), explicit ints, or cycling through the classes."""
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

    def generate(self, latents: torch.Tensor, labels: torch.Tensor | None, batch_size: int,
                 *args: Any) -> torch.Tensor:
        """The generator over `latents` in batches of `batch_size`: images (B, C, H, W) in [-1, 1], float32
        on the CPU. `args` follow (z, labels) in the generator's call (BigGAN's truncation)."""
        chunks = []
        for i in range(0, latents.shape[0], batch_size):
            z = latents[i:i + batch_size].to(self.device, self.dtype)
            y = None if labels is None else labels[i:i + batch_size].to(self.device)
            chunks.append(self.generator(z, y, *args).float().cpu())
        return torch.cat(chunks)

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
        gen = self.noise_generator(seed)
        if latents is None:
            latents = self.sample_latents(num_images, gen)
        y = self.labels_from(prompt, labels, latents.shape[0], gen)
        return self.output(self.generate(latents, y, batch_size), latents=latents, labels=y)


__all__ = ["GANPipeline", "LatentGANPipeline"]
