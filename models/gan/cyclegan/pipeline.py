"""CycleGAN translation pipeline: images of domain A in, images of domain B out (or back with BtoA)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from models.gan.cyclegan.config import PRESETS, CycleGANConfig
from models.gan.cyclegan.convert import DIRECTIONS, convert_generator, infer_generator_config
from models.gan.cyclegan.model import ResnetGenerator
from models.gan.pipeline_base import GANPipeline
from utils.errors import UserError
from utils.outputs import ImageOutput

ImageInput = str | Path | Image.Image | torch.Tensor


def _round4(n: int) -> int:
    return max(4, int(round(n / 4)) * 4)


class CycleGANPipeline(GANPipeline):
    """`CycleGANPipeline.from_pretrained("latest_net_G_A.pth")(image="horse.jpg").save("zebra.png")`.

    On the GAN base; what differs: a direction (G_A or G_B of a file holding both), no registered weights,
    a config always read off the generator's shapes, and images (files, folders, PIL, tensors) as input.
    """

    model_name = "cyclegan"
    config_class = CycleGANConfig
    presets = PRESETS
    network_class = ResnetGenerator
    config: CycleGANConfig

    def __init__(self, generator: ResnetGenerator, config: CycleGANConfig, device: torch.device, dtype: torch.dtype,
                 direction: str = "AtoB"):
        super().__init__(config, device, dtype)
        self.generator = self.place(generator)
        self.direction = direction

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None, device: str | None = None,
                        dtype: str | torch.dtype | None = None, direction: str = "AtoB") -> "CycleGANPipeline":
        """Random weights for `preset='tiny'`; else a generator checkpoint (original .pth or native safetensors).
        `direction` 'BtoA' takes G_B of a checkpoint holding both generators."""
        if direction not in DIRECTIONS:
            raise UserError(f"direction must be AtoB or BtoA, got '{direction}'")
        return cls._load_pipeline(source, preset, device, dtype, direction=direction)

    @staticmethod
    def resolve_source(source: str | Path) -> Path:
        """A released generator's URL (the style / season / object presets) is downloaded once into the torch hub
        cache; anything else as the base does."""
        if str(source).startswith(("http://", "https://")):
            from utils.weights.hub import fetch_release

            return fetch_release(str(source), "the CycleGAN generator", instead="or pass --weights with the .pth")
        return GANPipeline.resolve_source(source)

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        return UserError("no CycleGAN weights are registered: pass --weights with a generator file such as "
                         "latest_net_G_A.pth (the original release) or a generator.safetensors trained here, "
                         "or use --preset tiny for random weights")

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor], direction: str = "AtoB") -> CycleGANConfig:
        return infer_generator_config(state_dict, direction)

    @classmethod
    def read_checkpoint(cls, path: Path, preset: str | None,
                        direction: str = "AtoB") -> tuple[Path, dict[str, torch.Tensor], CycleGANConfig]:
        file, sd, config = super().read_checkpoint(path, preset, direction=direction)
        if direction == "BtoA":  # G_B maps the other way: its channels are swapped
            config = replace(config, in_channels=config.out_channels, out_channels=config.in_channels)
        return file, sd, config

    @classmethod
    def check_fit(cls, config: CycleGANConfig, preset: str | None, file: Path) -> None:
        """Nothing to check: a generator file does not say the training size or the discriminator's width
        that a preset also fixes, and the generator's shapes are always read off the file."""

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: CycleGANConfig,
                direction: str = "AtoB") -> dict[str, torch.Tensor]:
        return convert_generator(state_dict, direction)

    # -- inputs ------------------------------------------------------------------------------------

    def _load(self, item: ImageInput, size: int | None) -> tuple[torch.Tensor, str]:
        from utils.data.augmentations import to_tensor
        from utils.data.image_folder import load_rgb

        if isinstance(item, torch.Tensor):
            x = item if item.ndim == 3 else item[0]
            return x.float(), "tensor"
        name = "image"
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise UserError(f"input image not found: {path}")
            name, item = path.stem, load_rgb(path)
        img = item.convert("L" if self.config.in_channels == 1 else "RGB")
        # the generator halves the size twice and doubles it back: sides must be multiples of 4
        w, h = (size, size) if size is not None else (_round4(img.width), _round4(img.height))
        if (w, h) != img.size:
            img = img.resize((w, h), Image.Resampling.BICUBIC)
        return to_tensor(img), name

    @staticmethod
    def expand_inputs(image: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
        """A folder becomes its images (sorted); a list stays a list; anything else is one input."""
        if isinstance(image, (list, tuple)):
            return list(image)
        if isinstance(image, (str, Path)) and Path(image).is_dir():
            from utils.data.image_folder import find_images

            found = find_images(Path(image))
            if not found:
                raise UserError(f"no images in {image}: it should hold .png/.jpg/.webp/.bmp files")
            return list(found)
        if isinstance(image, torch.Tensor) and image.ndim == 4:
            return list(image)
        return [image]

    # -- translating -------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, image: ImageInput | Sequence[ImageInput] | None = None, seed: int | None = None,
                 size: int | None = None, height: int | None = None, width: int | None = None,
                 batch_size: int = 8, **unused: Any) -> ImageOutput:
        """Translate one image, a list, or a folder, `batch_size` same-size images per forward. The generator
        is deterministic: `seed` changes nothing."""
        if image is None:
            raise UserError("cyclegan translates images: pass image=<file, folder or PIL image> (--image on the CLI)")
        bad = sorted(k for k, v in unused.items() if v is not None and k not in ("num_images",))
        if bad:
            raise UserError(f"cyclegan takes no {', '.join(bad)}: it translates the given image(s)")
        if size is None and (height or width):
            if height and width and height != width:
                raise UserError("cyclegan resizes to a square: give --height and --width equal, or only one")
            size = height or width
        if size is not None and size % 4:
            raise UserError(f"the size must be a multiple of 4 (the generator downsamples twice), got {size}")
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        loaded = [self._load(item, size) for item in self.expand_inputs(image)]
        outputs: list[torch.Tensor | None] = [None] * len(loaded)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, (x, _) in enumerate(loaded):  # images of one size go through the generator together
            by_shape.setdefault(tuple(x.shape), []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                x = torch.stack([loaded[i][0] for i in chunk]).to(self.device, self.dtype)
                for i, y in zip(chunk, self.generator(x).float().cpu()):
                    outputs[i] = y
        return self.output(outputs, names=[name for _, name in loaded])
