"""BigGANPipeline: class labels (ints or ImageNet names) + seed + truncation -> images."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from models.gan.biggan.config import PRESETS, BigGANConfig
from models.gan.biggan.convert import convert_state_dict, infer_config
from models.gan.biggan.generator import BigGANGenerator
from models.gan.biggan.spec import SPEC
from utils.outputs import ImageOutput
from utils.errors import UserError, did_you_mean
from utils.torch_utils import make_generator, resolve_device, resolve_dtype
from utils.weights import load_into, load_state_dict, resolve

DEFAULT_PRESET = SPEC.default_preset
HUB_IDS = {f"biggan-deep-{r}": f"huggingface/biggan-deep-{r}" for r in (128, 256, 512)}
WEIGHTS_FILES = ("pytorch_model.bin", "model.safetensors", "biggan.safetensors")


def truncated_noise(shape: tuple[int, ...], truncation: float, generator: torch.Generator,
                    bound: float = 2.0) -> torch.Tensor:
    """truncation * (standard normal truncated to [-bound, bound]), drawn on the CPU.

    Values outside the bounds are redrawn until none is left, which samples the truncated
    normal exactly (the release's samplers use scipy's truncnorm(-2, 2) the same way).
    """
    z = torch.randn(shape, generator=generator)
    while True:
        bad = z.abs() > bound
        n = int(bad.sum())
        if n == 0:
            return truncation * z
        z[bad] = torch.randn(n, generator=generator)


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


class BigGANPipeline:
    """A BigGAN-deep generator ready to sample; `__call__` returns an `ImageOutput`."""

    def __init__(self, generator: BigGANGenerator, device: torch.device, dtype: torch.dtype):
        self.generator = generator.to(device=device, dtype=dtype).eval()
        self.config: BigGANConfig = generator.config
        self.device, self.dtype = device, dtype

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None,
                        device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "BigGANPipeline":
        """`source`: a pytorch_model.bin (config.json beside it), a folder holding both, or a hub id
        (huggingface/biggan-deep-128...). Without a source, `preset` names the weights; `tiny` is random."""
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        SPEC.check_preset(preset)
        if source is None:
            preset = preset or DEFAULT_PRESET
            if preset == "tiny":
                torch.manual_seed(0)
                return cls(BigGANGenerator(PRESETS["tiny"]), dev, dt)
            source = HUB_IDS[preset]
        weights, config = cls._locate(source, preset)
        sd = load_state_dict(weights)
        config = infer_config(sd, config)
        with torch.device("meta"):
            gen = BigGANGenerator(config)
        load_into(gen, convert_state_dict(sd, config), what=f"BigGAN checkpoint {weights.name}")
        return cls(gen, dev, dt)

    @staticmethod
    def _locate(source: str | Path, preset: str | None) -> tuple[Path, BigGANConfig]:
        """The weights file and the config: config.json beside the weights, else the preset."""
        path = resolve(source)
        if path.is_dir():
            found = next((path / f for f in WEIGHTS_FILES if (path / f).exists()), None)
            if found is None:
                raise UserError(f"no BigGAN weights in {path}: expected one of {', '.join(WEIGHTS_FILES)}")
            weights = found
        else:
            weights = path
        cfg_file = weights.parent / "config.json"
        if cfg_file.exists():
            config = BigGANConfig.from_reference_dict(json.loads(cfg_file.read_text()))
            if preset is not None and preset != "tiny" and config != PRESETS[preset]:
                raise UserError(f"the config.json beside {weights.name} does not describe preset '{preset}': "
                                "drop the preset to use the checkpoint's own configuration")
            return weights, config
        if preset is None:
            raise UserError(f"no config.json beside {weights.name}: put the config.json of the release next to it, "
                            f"or name the preset ({', '.join(PRESETS)})")
        return weights, PRESETS[preset]

    # -- sampling --------------------------------------------------------------------------------

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
        gen = make_generator(seed)
        if latents is None:
            if num_images < 1:
                raise UserError("the number of images must be at least 1")
            latents = truncated_noise((num_images, self.config.z_dim), float(truncation), gen)
        elif latents.ndim != 2 or latents.shape[1] != self.config.z_dim:
            raise UserError(f"latents must have shape (batch, {self.config.z_dim}), got {tuple(latents.shape)}")
        n = latents.shape[0]
        y = self.labels(class_labels, n, gen)
        chunks = []
        for i in range(0, n, batch_size):
            z = latents[i:i + batch_size].to(self.device, self.dtype)
            chunks.append(self.generator(z, y[i:i + batch_size].to(self.device), float(truncation)).float().cpu())
        return ImageOutput.from_tensor(torch.cat(chunks), latents=latents, labels=y)
