"""VQGANPipeline: reconstruct images through the codebook, or decode grids of code indices."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from models.gan.vqgan.config import PRESETS, VQGANConfig
from models.gan.vqgan.convert import load_vqgan_checkpoint
from models.gan.vqgan.model import VQGAN
from models.gan.pipeline_base import GANPipeline
from utils.data.augmentations import center_crop
from utils.data.image_folder import load_rgb
from utils.errors import UserError, WeightsError
from utils.outputs import ImageOutput

OFFICIAL_LINKS = {
    "imagenet-f16-1024": "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/",
    "imagenet-f16-16384": "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/",
}

ImageInput = Image.Image | str | Path | torch.Tensor | np.ndarray


def image_to_tensor(image: ImageInput | Sequence[ImageInput], size: int | None = None) -> torch.Tensor:
    """PIL images, paths, arrays (H, W, 3 uint8) or a tensor in [-1, 1] -> (B, 3, H, W) in [-1, 1].

    With `size`, each image is resized (shorter side) and centre-cropped to size x size.
    """
    if isinstance(image, torch.Tensor):
        x = image[None] if image.ndim == 3 else image
        return x.float()
    items = list(image) if isinstance(image, (list, tuple)) else [image]
    tensors = []
    for item in items:
        if isinstance(item, (str, Path)):
            if not Path(item).is_file():
                raise UserError(f"image not found: {item}: check the path")
            item = load_rgb(Path(item))
        if isinstance(item, np.ndarray):
            item = Image.fromarray(item)
        img = item.convert("RGB")
        if size is not None:
            scale = size / min(img.size)
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))),
                             Image.BICUBIC)
            img = center_crop(img, size)
        arr = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)
        tensors.append(arr / 127.5 - 1.0)
    if len({t.shape for t in tensors}) > 1:
        raise UserError("the images have different sizes: pass size=... to resize and crop them all")
    return torch.stack(tensors)


class VQGANPipeline(GANPipeline):
    """A VQGAN autoencoder; `__call__(image=...)` reconstructs, `__call__(indices=...)` decodes codes.

    `from_pretrained(source)`: a taming .ckpt (or the log folder holding checkpoints/last.ckpt), a
    diffusers VQModel folder (or its parent with a vqvae/ folder), a native .safetensors, or a hub id of a
    diffusers VQModel; `preset='tiny'` without a source is random. On the GAN base; what differs: the
    folders it reads, the discriminator a taming checkpoint carries, images <-> code indices.
    """

    model_name = "vqgan"
    config_class = VQGANConfig
    presets = PRESETS
    network_class = VQGAN
    config: VQGANConfig

    def __init__(self, model: VQGAN, config: VQGANConfig, device: torch.device, dtype: torch.dtype,
                 discriminator_state: dict[str, torch.Tensor] | None = None):
        super().__init__(config, device, dtype)
        self.model = self.place(model)
        self.discriminator_state = discriminator_state or {}
        """The PatchGAN weights found in a taming checkpoint (to resume training), else empty."""

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        return WeightsError(f"the taming-transformers VQGAN weights are not on the Hugging Face hub: download "
                            f"last.ckpt from {OFFICIAL_LINKS[preset]} and pass its path as the weights "
                            "(or use preset 'tiny' for random weights)")

    @classmethod
    def from_source(cls, source: str | Path, preset: str | None, device: torch.device,
                    dtype: torch.dtype) -> "VQGANPipeline":
        """Every VQGAN layout through `convert.load_vqgan_checkpoint`; a taming checkpoint's discriminator
        is split off and kept beside the model."""
        path = cls.resolve_source(source)
        config, ae, disc = load_vqgan_checkpoint(path, preset)
        return cls(cls.load_network(config, ae, path), config, device, dtype, discriminator_state=disc)

    # -- running ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, image: ImageInput | Sequence[ImageInput], size: int | None = None) -> torch.Tensor:
        """Images -> code indices (B, H/f, W/f)."""
        x = self._check(image_to_tensor(image, size))
        return self.model.encode_to_indices(x.to(self.device, self.dtype)).cpu()

    @torch.inference_mode()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices (B, h, w) -> images (B, 3, h*f, w*f) in [-1, 1]."""
        indices = torch.as_tensor(indices)
        if indices.ndim == 2:
            indices = indices[None]
        if indices.ndim != 3:
            raise UserError(f"code indices must have shape (batch, height, width), got {tuple(indices.shape)}")
        if indices.min() < 0 or indices.max() >= self.config.n_embed:
            raise UserError(f"code indices must lie in 0..{self.config.n_embed - 1}")
        return self.model.decode_indices(indices.to(self.device)).float().cpu()

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        f = self.config.downsample_factor
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise UserError(f"expected images with {self.config.in_channels} channels, got shape {tuple(x.shape)}")
        if x.shape[2] % f or x.shape[3] % f:
            raise UserError(f"image size {x.shape[3]}x{x.shape[2]} is not a multiple of {f} (this VQGAN's "
                            f"downsampling factor): pass size=<multiple of {f}> to resize and crop")
        return x

    @torch.inference_mode()
    def __call__(self, image: ImageInput | Sequence[ImageInput] | None = None, indices: torch.Tensor | None = None,
                 seed: int | None = None, size: int | None = None, num_images: int = 1) -> ImageOutput:
        """Reconstruct `image` (returns the reconstructions and their code `indices`), or
        decode `indices`. With neither, decodes uniformly random codes drawn from `seed` (a smoke
        test: VQGAN alone is not a sampler; a transformer over the codes is)."""
        if image is not None and indices is not None:
            raise UserError("pass either an image to reconstruct or code indices to decode, not both")
        if image is not None:
            x = self._check(image_to_tensor(image, size)).to(self.device, self.dtype)
            rec, _, idx = self.model(x)
            images, idx = rec.float().cpu(), idx.cpu()
        else:
            if indices is None:
                side = (size or self.config.resolution) // self.config.downsample_factor
                indices = torch.randint(0, self.config.n_embed, (num_images, side, side),
                                        generator=self.noise_generator(seed))
            images = self.decode(indices)
            idx = torch.as_tensor(indices)
        return self.output(images, indices=idx)
