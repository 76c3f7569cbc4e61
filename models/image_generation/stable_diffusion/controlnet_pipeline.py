"""ControlNet in the SD 1.5 / 2.1 and SDXL pipelines: loading one, making its control image, and the
denoiser that runs it before the UNet at every step.

A call takes `control` (a kind: 'canny', 'depth', 'pose'), `control_image` (the photo, depth map or pose
rendering; utils/preprocess makes the control image from it) and `control_scale` (the residuals'
weight, diffusers' `controlnet_conditioning_scale`). The ControlNet is the one loaded with
`pipe.load_controlnet(source)` (or `from_pretrained(..., controlnet=...)`); without one, the kind's
default release (`spec.CONTROLNETS`) is fetched, and the tiny preset builds a random tiny one.
With classifier-free guidance the ControlNet runs on both branches, as in diffusers' pipelines.
"""
from __future__ import annotations

from typing import Any

import torch

from models.image_generation.stable_diffusion.controlnet import ControlNet, ControlNetConfig
from models.image_generation.stable_diffusion.spec import CONTROLNETS
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.errors import UserError


def tiny_controlnet(unet_config: UNetConfig, vae_downscale: int = 8) -> ControlNet:
    """A random ControlNet for a tiny UNet, its control image embedding downscaling as the VAE does. Its
    zero convolutions get random weights too, so that the control image visibly steers the output (a
    trained ControlNet's are no longer zero either)."""
    from utils.torch_utils import local_seed

    levels = max(vae_downscale.bit_length() - 1, 0)  # log2 of the VAE's factor
    widths = tuple(8 * 2 ** i for i in range(levels + 1))
    with local_seed(0):
        net = ControlNet(ControlNetConfig(unet_config, hint_block_channels=widths))
        with torch.no_grad():
            for zero in [*net.zero_convs, net.middle_block_out]:
                torch.nn.init.normal_(zero[0].weight, std=0.2)
            torch.nn.init.normal_(net.input_hint_block[-1].weight, std=0.2)
    return net.eval()


class ControlledUNet:
    """The UNet with a ControlNet's residuals added, called as the UNet is (x, t, context[, y])."""

    def __init__(self, unet: SDXLUNet, controlnet: ControlNet, hint: torch.Tensor, scale: float):
        self.unet, self.controlnet, self.hint, self.scale = unet, controlnet, hint, scale

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        residuals = self.controlnet(x, t, context, y, self.hint, self.scale)
        return self.unet(x, t, context, y, **residuals.unet_kwargs())


class ControlNetSupport:
    """What SD15Pipeline and SDXLPipeline share for ControlNet (a mixin: they hold `unet` and `controlnet`)."""

    controlnet: ControlNet | None = None
    control_kind: str | None = None
    """The kind of the loaded ControlNet when it is known (a default release); None for a user's file."""

    def load_controlnet(self, source: Any, kind: str | None = None) -> ControlNet:
        """Attach a ControlNet: a file (official `control_model.*` or diffusers layout), a diffusers folder, a
        hub id, or a ControlNet module. It must fit the UNet (SD 1.5 vs SDXL); it takes the UNet's place and dtype."""
        from models.image_generation.stable_diffusion.controlnet_convert import load_controlnet

        if getattr(self, "_offload", None) is not None:
            raise UserError("this pipeline runs with CPU offload: pass controlnet= to from_pretrained instead of "
                            "loading it afterwards")
        unet = self.unet
        net = source if isinstance(source, ControlNet) else load_controlnet(source, preset=_unet_preset(unet.config),
                                                                           dtype=unet.dtype)
        net.check_fits(unet.config)
        self.controlnet = net.to(unet.device, unet.dtype).eval()
        self.control_kind = kind
        return self.controlnet

    def _default_controlnet(self, kind: str) -> ControlNet:
        if self.preset == "tiny":
            net = tiny_controlnet(self.unet.config, self.vae.config.downscale)
            net.check_fits(self.unet.config)
            self.controlnet, self.control_kind = net.to(self.unet.device, self.unet.dtype), kind
            return self.controlnet
        family = "sdxl" if self.unet.config.adm_in_channels else self.preset
        source = CONTROLNETS.get((family, kind))
        if source is None:
            raise UserError(f"no default {kind} ControlNet for {family}: pass one with --controlnet PATH_OR_REPO "
                            "(pipe.load_controlnet)")
        try:
            return self.load_controlnet(source[0], kind)
        except UserError as err:  # offline, not cached: say how to give one instead
            raise type(err)(f"{err} (or pass a local ControlNet with --controlnet PATH)") from None

    def controlled(self, unet: SDXLUNet, control: Any, control_image: Any, control_scale: float,
                   size: tuple[int, int]) -> Any:
        """The denoiser to guide: the UNet itself, or the UNet run with the ControlNet of `control`."""
        from utils.preprocess.control import CONTROL_KINDS, control_image as make_control_image

        if control is None:
            if control_image is not None:
                raise UserError("a control image needs its kind: pass control= (CLI: --control canny|depth|pose)")
            return unet
        if not isinstance(control, str) or control not in CONTROL_KINDS:
            raise UserError(f"control must be one of {', '.join(CONTROL_KINDS)} (the ControlNet's condition), got "
                            f"{control!r}: pass the image with control_image= (CLI: --control-image)")
        if control_image is None:
            raise UserError(f"control='{control}' steers the ControlNet with an image: pass control_image= "
                            "(CLI: --control-image PATH)")
        if not 0.0 <= float(control_scale) <= 10.0:
            raise UserError(f"control_scale must be in [0, 10], got {control_scale} (1 is the trained strength)")
        if self.control_kind is not None and self.controlnet is not None and self.control_kind != control:
            raise UserError(f"the loaded ControlNet is for {self.control_kind}, not {control}: load a {control} "
                            "ControlNet (--controlnet) or pass control='" + self.control_kind + "'")
        net = self.controlnet if self.controlnet is not None else self._default_controlnet(control)
        net.check_fits(unet.config)
        if net.config.hint_downscale != self.vae.config.downscale:
            raise UserError(f"this ControlNet embeds control images at 1/{net.config.hint_downscale} size but the "
                            f"VAE's latents are 1/{self.vae.config.downscale}: pass a ControlNet made for this model")
        hint = make_control_image(control, control_image, size, what="--control-image")
        return ControlledUNet(unet, net, hint.to(self.device, self.dtype), float(control_scale))


def _unet_preset(cfg: UNetConfig) -> str | None:
    if cfg.model_channels != 320:
        return None
    if cfg.adm_in_channels:
        return "sdxl-base"
    return "sd21" if cfg.context_dim == 1024 else "sd15"


__all__ = ["ControlNetSupport", "ControlledUNet", "tiny_controlnet"]
