"""EG3D's "hybrid" super-resolution: two StyleGAN2 synthesis blocks from the neural render to the image.

The raw feature image (C channels, the first three RGB) is resized (bilinear, antialiased) to the
module's input resolution; the first block keeps that resolution ("NoUp", for 2x and 4x) or doubles it
(8x), the second doubles it; both are modulated by the generator's last w (repeated to the blocks' three
styles), and their ToRGB outputs add onto the upsampled raw RGB ("skip"). The blocks are the shared
`utils.nn.stylegan` ones; module names follow EG3D's (`block0`, `block1`), so its weights load as they are.

| EG3D module                  | input | block0        | block1        | output |
|------------------------------|-------|---------------|---------------|--------|
| SuperresolutionHybrid2X      | 64    | NoUp, 128 ch  | up, 64 ch     | 128    |
| SuperresolutionHybrid4X      | 128   | NoUp, 128 ch  | up, 64 ch     | 256    |
| SuperresolutionHybrid8X      | 128   | up, 128 ch    | up, 64 ch     | 512    |
| SuperresolutionHybrid8XDC    | 128   | up, 256 ch    | up, 128 ch    | 512    |
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.nn.stylegan.stylegan2 import StyleGAN2Block, StyleGAN2Layer, ToRGBLayer
from utils.nn.stylegan.upfirdn2d import setup_filter

__all__ = ["SR_MODULES", "SynthesisBlockNoUp", "SuperResolution"]

SR_MODULES: dict[str, tuple[int, int, int, int, bool, bool]] = {
    # name: (input resolution, output resolution, block0 channels, block1 channels, block0 upsamples,
    #        has the top-level resample_filter buffer)
    "SuperresolutionHybrid2X": (64, 128, 128, 64, False, True),
    "SuperresolutionHybrid4X": (128, 256, 128, 64, False, True),
    "SuperresolutionHybrid8X": (128, 512, 128, 64, True, True),
    "SuperresolutionHybrid8XDC": (128, 512, 256, 128, True, False),
}
"""EG3D's super-resolution modules by class name."""


class SynthesisBlockNoUp(StyleGAN2Block):
    """A StyleGAN2 synthesis block at its input's resolution: conv0 (no upsampling), conv1, ToRGB added to
    the incoming image as it is."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, conv_clamp: float | None = None, fused_modconv_default: bool | str = True,
                 use_fp16: bool = False):
        nn.Module.__init__(self)
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, "skip"
        self.use_fp16, self.fused_modconv_default = use_fp16, fused_modconv_default
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        layer = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp)
        self.conv0 = StyleGAN2Layer(in_channels, out_channels, **layer)
        self.conv1 = StyleGAN2Layer(out_channels, out_channels, **layer)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv, self.num_torgb = 2, 1

    def forward(self, x: Tensor, img: Tensor | None, ws: Tensor, force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_mode: str = "random",
                noise_generator: torch.Generator | None = None, **_: object) -> tuple[Tensor, Tensor]:
        w0, w1, w2 = ws.unbind(dim=1)
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        layer = dict(fused_modconv=fused_modconv, noise_mode=noise_mode, noise_generator=noise_generator)
        fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        x = x.to(torch.float16 if fp16 else torch.float32)
        x = self.conv1(self.conv0(x, w0, **layer), w1, **layer)
        y = self.torgb(x, w2, fused_modconv=fused_modconv).float()
        return x, (y if img is None else img + y)


class SuperResolution(nn.Module):
    """(raw rgb (B, 3, r, r), raw features (B, C, r, r), ws (B, num_ws, w_dim)) -> image (B, 3, R, R)."""

    def __init__(self, module: str, channels: int, w_dim: int, antialias: bool = True,
                 fused_modconv_default: bool | str = "inference_only", img_channels: int = 3,
                 img_resolution: int | None = None, block_channels: tuple[int, int] | None = None,
                 num_fp16_res: int = 0):
        super().__init__()
        if module not in SR_MODULES:
            raise ValueError(f"unknown super-resolution module {module!r}: one of {', '.join(SR_MODULES)}")
        self.module = module
        self.input_resolution, self.img_resolution, c0, c1, up0, buffer = SR_MODULES[module]
        # a scaled variant (the tiny preset): the module's structure at another output size and width
        if img_resolution is not None and img_resolution != self.img_resolution:
            self.img_resolution = img_resolution
            self.input_resolution = img_resolution // (4 if up0 else 2)
        if block_channels is not None:
            c0, c1 = block_channels
        self.antialias = antialias
        fp16 = num_fp16_res > 0
        block = dict(w_dim=w_dim, img_channels=img_channels, fused_modconv_default=fused_modconv_default,
                     use_fp16=fp16, conv_clamp=256 if fp16 else None)
        if up0:
            self.block0 = StyleGAN2Block(channels, c0, resolution=self.input_resolution * 2, is_last=False, **block)
        else:
            self.block0 = SynthesisBlockNoUp(channels, c0, resolution=self.input_resolution, is_last=False, **block)
        self.block1 = StyleGAN2Block(c0, c1, resolution=self.img_resolution, is_last=True, **block)
        if buffer:
            self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, rgb: Tensor, x: Tensor, ws: Tensor, noise_mode: str = "none",
                noise_generator: torch.Generator | None = None, fused_modconv: bool | None = None) -> Tensor:
        ws = ws[:, -1:].repeat(1, 3, 1)
        # the 4X module only ever enlarges its input; the others resize it either way
        if x.shape[-1] != self.input_resolution and (self.module != "SuperresolutionHybrid4X"
                                                     or x.shape[-1] < self.input_resolution):
            size = (self.input_resolution, self.input_resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=self.antialias)
            rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=self.antialias)
        kw = dict(noise_mode=noise_mode, noise_generator=noise_generator, fused_modconv=fused_modconv)
        x, rgb = self.block0(x, rgb, ws, **kw)
        x, rgb = self.block1(x, rgb, ws, **kw)
        return rgb
