"""Super-resolution pipelines: images in, images `scale` times larger out, whole or tile by tile.

    from models.gan.esrgan import ESRGANPipeline
    pipe = ESRGANPipeline.from_pretrained(preset="realesrgan-x4plus")     # the release, fetched once
    pipe(image="photo.png", tile=256).save("photo_x4.png")

Both sit on the GAN pipeline base (`models/gan/pipeline_base.py`); what differs is the input (files, a
folder, PIL images, tensors in [0, 1]), the tiling of large images (`utils/nn/tiling.py`) and, for the
RRDBNet family, the release layouts of `convert.py`.
"""
from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from models.gan.esrgan.config import RRDB_PRESETS, SRRESNET_PRESETS, RRDBNetConfig, SRResNetConfig
from models.gan.esrgan.convert import convert_rrdbnet, infer_rrdbnet_config, strip_wrappers
from models.gan.esrgan.model import RRDBNet, SRResNet
from models.gan.pipeline_base import GANPipeline
from utils.errors import UserError
from utils.outputs import ImageOutput

ImageInput = str | Path | Image.Image | torch.Tensor

TRAINING_FIELDS = ("discriminator", "d_features", "hr_size")
"""Config fields that only training reads: a checkpoint does not record them, so they never decide a fit."""


def architecture(config: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(config).items() if k not in TRAINING_FIELDS}


class SuperResolutionPipeline(GANPipeline):
    """What SRGAN and ESRGAN share: inputs, tiling, the optional final resize, the output."""

    def __init__(self, generator: torch.nn.Module, config: Any, device: torch.device, dtype: torch.dtype):
        super().__init__(config, device, dtype)
        self.generator = self.place(generator)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def in_channels(self) -> int:
        return getattr(self.config, "in_channels", getattr(self.config, "channels", 3))

    @staticmethod
    def resolve_source(source: str | Path) -> Path:
        """A release URL is downloaded once into the torch hub cache; anything else as the base does."""
        text = str(source)
        if text.startswith(("http://", "https://")):
            from utils.weights.hub import fetch_release

            return fetch_release(text, "super-resolution weights", instead="or pass --weights with the file")
        return GANPipeline.resolve_source(source)

    @classmethod
    def read_state_dict(cls, file: Path) -> dict[str, torch.Tensor]:
        from utils.weights import load_state_dict

        # not unwrapped by the loader: a BasicSR file may hold both `params` and `params_ema`, and EMA comes first
        return strip_wrappers(load_state_dict(file, unwrap=False))

    @classmethod
    def check_fit(cls, config: Any, preset: str | None, file: Path) -> None:
        if preset is not None and preset != "tiny" and architecture(config) != architecture(cls.presets[preset]):
            got, want = architecture(config), architecture(cls.presets[preset])
            diff = ", ".join(f"{k} {got[k]} (preset: {want[k]})" for k in want if got.get(k) != want[k])
            raise UserError(f"the weights in {file.name} do not fit {cls.model_name} preset '{preset}' ({diff}): "
                            "drop --preset to use the checkpoint's own configuration")

    @classmethod
    def read_checkpoint(cls, path: Path, preset: str | None, **options: Any):
        file, sd, config = super().read_checkpoint(path, preset, **options)
        if preset is not None and preset in cls.presets:  # keep the preset's training fields
            config = replace(config, **{f.name: getattr(cls.presets[preset], f.name) for f in fields(config)
                                        if f.name in TRAINING_FIELDS})
        return file, sd, config

    # -- inputs ------------------------------------------------------------------------------------

    @staticmethod
    def expand_inputs(image: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
        """A folder becomes its images (sorted); a list stays a list; a (B, C, H, W) tensor its images."""
        if isinstance(image, (list, tuple)):
            return list(image)
        if isinstance(image, (str, Path)) and Path(image).is_dir():
            from utils.data.image_folder import IMAGE_SUFFIXES, find_images

            found = find_images(Path(image))
            if not found:
                raise UserError(f"no images in {image}: it should hold {', '.join(IMAGE_SUFFIXES)} files")
            return list(found)
        if isinstance(image, torch.Tensor) and image.ndim == 4:
            return list(image)
        return [image]

    def load_input(self, item: ImageInput) -> tuple[torch.Tensor, str]:
        """(1, C, H, W) in [0, 1] and a name, from a file, a PIL image or a (C, H, W) tensor in [0, 1]."""
        if isinstance(item, torch.Tensor):
            x = item.float()
            return (x if x.ndim == 4 else x[None]), "tensor"
        name = "image"
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise UserError(f"input image not found: {path}")
            from utils.data.image_folder import load_rgb

            name, item = path.stem, load_rgb(path)
        from utils.data.augmentations import to_tensor

        img = item.convert("L" if self.in_channels == 1 else "RGB")
        return (to_tensor(img)[None] + 1) / 2, name

    # -- upscaling ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, tile: int = 0, tile_pad: int = 10) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, C, scale H, scale W) in [0, 1], float32 on the CPU; `tile` > 0 runs
        tiles of that side with `tile_pad` pixels of context (for images too large for memory)."""
        from utils.nn.tiling import tiled_map

        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UserError(f"{self.model_name} takes (B, {self.in_channels}, H, W) images, got {tuple(x.shape)}")
        lo, hi = self.generator.value_range
        net_in = (x.to(self.device, self.dtype) * (hi - lo) + lo)

        def run(t: torch.Tensor) -> torch.Tensor:
            return self.generator(t)

        y = tiled_map(run, net_in, self.scale, tile, tile_pad) if tile and tile > 0 else run(net_in)
        return ((y.float() - lo) / (hi - lo)).clamp(0, 1).cpu()

    @torch.inference_mode()
    def __call__(self, image: ImageInput | Sequence[ImageInput] | None = None, tile: int | None = None,
                 tile_pad: int | None = None, outscale: float | None = None, seed: int | None = None,
                 **unused: Any) -> ImageOutput:
        """Upscale one image, a list, or a folder. The network is deterministic: `seed` changes nothing.

        `tile` (0: whole image) and `tile_pad` default to the spec's; `outscale` resizes the result to
        `outscale` x the input side (bicubic with antialiasing), e.g. 2 with an x4 model."""
        if image is None:
            raise UserError(f"{self.model_name} upscales images: pass image=<file, folder or PIL image> "
                            "(--image on the CLI)")
        bad = sorted(k for k, v in unused.items() if v is not None and k not in ("num_images",))
        if bad:
            raise UserError(f"{self.model_name} takes no {', '.join(bad)}: it upscales the given image(s)")
        spec = self.spec()
        tile = spec.default("*", "tile", 0) if tile is None else tile
        tile_pad = spec.default("*", "tile_pad", 10) if tile_pad is None else tile_pad
        if tile < 0 or tile_pad < 0:
            raise UserError(f"--tile and --tile-pad must be 0 or more, got {tile} and {tile_pad}")
        if outscale is not None and not 0 < outscale <= 16:
            raise UserError(f"--outscale must be in (0, 16], got {outscale}")
        outputs, names = [], []
        for item in self.expand_inputs(image):
            x, name = self.load_input(item)
            y = self.upscale_tensor(x, tile, tile_pad)
            if outscale is not None and outscale != self.scale:
                size = (max(1, round(x.shape[-2] * outscale)), max(1, round(x.shape[-1] * outscale)))
                y = F.interpolate(y, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            outputs += list(y * 2 - 1)
            names += [name] * len(y)
        return self.output(outputs, names=names)


    def enhance_image(self, low_res_image: ImageInput, **options: Any) -> Image.Image:
        """The seed's `SuperResolutionGAN.enhance_image`: one image in, the upscaled PIL image out."""
        return self(image=low_res_image, **options).images[0]


class ESRGANPipeline(SuperResolutionPipeline):
    """ESRGAN / Real-ESRGAN (RRDBNet): `ESRGANPipeline.from_pretrained(preset="realesrgan-x4plus")`, or any
    RRDBNet file (`convert.py` reads the layouts and the config off the shapes)."""

    model_name = "esrgan"
    config_class = RRDBNetConfig
    presets = RRDB_PRESETS
    network_class = RRDBNet
    config: RRDBNetConfig

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        return UserError(f"no download is registered for esrgan preset '{preset}': ESRGAN's RRDB_ESRGAN_x4.pth is "
                         "shared on Google Drive (github.com/xinntao/ESRGAN): download it and pass --weights "
                         "RRDB_ESRGAN_x4.pth, or use --preset realesrgan-x4plus (fetched from GitHub) or tiny")

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor], **options: Any) -> RRDBNetConfig:
        return infer_rrdbnet_config(convert_rrdbnet(state_dict))

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: RRDBNetConfig, **options: Any):
        return convert_rrdbnet(state_dict)


def infer_srresnet_config(sd: dict[str, torch.Tensor]) -> SRResNetConfig | None:
    """SRResNet's widths, channels, blocks and scale from its shapes (None: not an SRResNet)."""
    import re

    first = sd.get("conv_first.weight")
    if first is None or first.ndim != 4 or first.shape[-1] != 9:
        return None
    blocks = {int(m[1]) for k in sd if (m := re.match(r"body\.(\d+)\.conv1\.weight$", k))}
    ups = {int(m[1]) for k in sd if (m := re.match(r"upsample\.(\d+)\.conv\.weight$", k))}
    return SRResNetConfig(scale=2 ** len(ups), channels=int(first.shape[1]), num_feat=int(first.shape[0]),
                          num_block=len(blocks))


class SRGANPipeline(SuperResolutionPipeline):
    """SRGAN (SRResNet): weights trained here (`train_gan.py --model srgan`); no official release exists."""

    model_name = "srgan"
    config_class = SRResNetConfig
    presets = SRRESNET_PRESETS
    network_class = SRResNet
    config: SRResNetConfig

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        return UserError("SRGAN's authors released no weights: train them with `python train/train_gan.py --model "
                         "srgan --data FOLDER` and pass --weights <run>/generator.safetensors, or use --preset tiny "
                         "(random weights) or --model esrgan --preset realesrgan-x4plus")

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor], **options: Any) -> SRResNetConfig | None:
        return infer_srresnet_config(state_dict)
