"""The Gen-3-style controls that act on the latents of a clip: first-frame pinning (image-to-video), input clips
(video-to-video) and the motion brush.

Pinning: after every sampling step the pinned latents are replaced by the clean latents of the still image,
re-noised to the next step's level with the clip's own noise (`utils.diffusion.InpaintBlend`), mixed in by a
per-frame, per-pixel weight. The last step puts back the clean latents, so a pin of strength 1 leaves that
frame (or region) exactly the image's latents.

Motion brush: a mask (white = moves; of the image's own width and height, else refused) and a motion (a named
one, or dx, dy in pixels per second; none: each frame's own noise inside, the motion modules' free choice).
Outside the mask every frame is pinned to the still image (and, after decoding, the decoded still is pasted
back outside the feathered mask: the VAE decoder's attention would otherwise stir the background a little);
inside it, frame k starts from the first frame's noise moved by the motion (frame k's noise at p is frame 0's at p - k * d: integer latent-pixel shifts for translations,
nearest-pixel sampling for zooms). A denoiser that is roughly translation-equivariant turns moved noise into
moved content; that is the whole mechanism (the noise-warping idea of motion-guided samplers), with its limits:
the motion inside is what the noise carries, not a physical model; a zoom repeats noise pixels (correlated
noise, a smoother region); content entering at the edge of the region is new.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from utils.errors import UserError

MOTIONS = ("left", "right", "up", "down", "zoom-in", "zoom-out")
"""Named motions: translations at a quarter of the frame per second, zooms by 25 % per second."""

TRANSLATE_PER_SECOND = 0.25
ZOOM_PER_SECOND = 1.25


def load_frames(video: Any, size: tuple[int, int], num_frames: int | None = None, fps: float | None = None,
                what: str = "video") -> torch.Tensor:
    """(F, 3, H, W) in [-1, 1] at `size` from a video file or folder of frames, a list of images (paths or PIL)
    or a (F, 3, H, W) tensor in [0, 1]. With `num_frames`, the first that many (fewer is one clear line)."""
    from utils.data.image_inputs import load_image

    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[1] != 3:
            raise UserError(f"a {what} tensor must be (F, 3, H, W) in [0, 1], got {tuple(video.shape)}")
        frames = load_image(video.float(), size)
    elif isinstance(video, (list, tuple)):
        frames = torch.cat([load_image(f, size) for f in video])
    elif isinstance(video, (str, os.PathLike)):
        from utils.data.video import read_video

        clip = read_video(video, num_frames=None, fps=fps, size=size)
        frames = clip.frames * 2 - 1
    else:
        raise UserError(f"{what} must be a video path, a list of frames or a (F, 3, H, W) tensor, got "
                        f"{type(video).__name__}")
    if num_frames is not None:
        if frames.shape[0] < num_frames:
            raise UserError(f"the {what} has {frames.shape[0]} frames, {num_frames} were asked for: give a longer "
                            f"clip or ask for at most {frames.shape[0]} frames (--num-frames)")
        frames = frames[:num_frames]
    return frames


def brush_mask(mask: Any, image_size: tuple[int, int] | None, latent_size: tuple[int, int],
               warn: bool = True) -> torch.Tensor:
    """The motion mask (PNG, white = moves) as a (1, 1, h, w) {0, 1} tensor at `latent_size` (nearest). A mask
    of another size than the image (`image_size`, (H, W); None: not checked) is refused: it must be painted
    over that image (same width and height)."""
    from PIL import Image

    from utils.data.image_inputs import load_mask

    if isinstance(mask, (str, os.PathLike)):
        if not os.path.isfile(mask):
            raise UserError(f"motion mask not found: {mask}: give a PNG (white = the region that moves)")
        try:
            with Image.open(mask) as im:
                mask = im.convert("L")
        except OSError:
            raise UserError(f"cannot read the motion mask {mask}: give a PNG (white = the region that moves)") from None
    got = tuple(mask.shape[-2:]) if isinstance(mask, torch.Tensor) else (mask.height, mask.width)
    if image_size is not None and got != tuple(image_size):
        raise UserError(f"the motion mask is {got[1]}x{got[0]}, the image {image_size[1]}x{image_size[0]}: paint the "
                        "mask over the image itself (same width and height)")
    m = load_mask(mask, latent_size)[:1]
    if warn and float(m.sum()) == 0:
        warnings.warn("the motion mask is all black: nothing moves (white marks the region that moves)")
    return m


def feather(mask: torch.Tensor, width: int) -> torch.Tensor:
    """(1, 1, H, W) {0, 1} -> soft weights: the mask grown by `width` pixels and box-blurred over as many, so
    pasting the still back outside it leaves no seam at the mask's edge."""
    if width <= 0:
        return mask
    k = 2 * width + 1
    grown = F.max_pool2d(mask, k, stride=1, padding=width)
    return F.avg_pool2d(grown, k, stride=1, padding=width, count_include_pad=False).clamp(0, 1)


def motion_vector(motion: str | Sequence[float] | None, size: tuple[int, int]) -> tuple[str, float, float]:
    """('translate', dx, dy) in pixels per second, or ('zoom', factor per second, 0); `size` is (H, W)."""
    if motion is None:
        return ("translate", 0.0, 0.0)
    if isinstance(motion, str):
        name = motion.strip().lower()
        if "," in name:
            try:
                dx, dy = (float(v) for v in name.split(","))
            except ValueError:
                raise UserError(f"motion '{motion}' is not dx,dy (pixels per second) nor one of "
                                f"{', '.join(MOTIONS)}") from None
            return motion_vector((dx, dy), size)
        h, w = size
        table = {"left": ("translate", -TRANSLATE_PER_SECOND * w, 0.0),
                 "right": ("translate", TRANSLATE_PER_SECOND * w, 0.0),
                 "up": ("translate", 0.0, -TRANSLATE_PER_SECOND * h),
                 "down": ("translate", 0.0, TRANSLATE_PER_SECOND * h),
                 "zoom-in": ("zoom", ZOOM_PER_SECOND, 0.0), "zoom-out": ("zoom", 1 / ZOOM_PER_SECOND, 0.0)}
        if name not in table:
            from utils.errors import did_you_mean

            raise UserError(f"unknown motion '{motion}': {did_you_mean(name, list(MOTIONS))} (or dx,dy in pixels "
                            "per second)")
        return table[name]
    dx, dy = (float(v) for v in motion)
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise UserError(f"motion direction must be finite numbers, got {motion}")
    return ("translate", dx, dy)


def warp_noise(noise: torch.Tensor, num_frames: int, kind: str, a: float, b: float, fps: float, downscale: int,
               strength: float = 1.0) -> torch.Tensor:
    """(B, C, h, w) first-frame noise -> (B, F, C, h, w): frame k's noise at p is frame 0's at the point the
    motion brings to p after k / fps seconds (integer latent pixels: the noise stays exactly Gaussian for
    translations; zooms sample the nearest pixel)."""
    _, _, h, w = noise.shape
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frames = [noise]
    for k in range(1, num_frames):
        seconds = k / fps * strength
        if kind == "zoom":
            s = a ** seconds
            cy, cx = (h - 1) / 2, (w - 1) / 2
            sy = torch.round(cy + (ys - cy) / s).long().clamp(0, h - 1)
            sx = torch.round(cx + (xs - cx) / s).long().clamp(0, w - 1)
            frames.append(noise[:, :, sy, sx])
        else:
            dx, dy = math.floor(a * seconds / downscale + 0.5), math.floor(b * seconds / downscale + 0.5)
            frames.append(torch.roll(noise, shifts=(dy, dx), dims=(-2, -1)))
    return torch.stack(frames, dim=1)


def pin_weights(batch: int, num_frames: int, latent_size: tuple[int, int], first_frame: float,
                region: torch.Tensor | None = None) -> torch.Tensor:
    """(B, F, 1, h, w) weights of the generated sample (1 = free, 0 = pinned to the image): frame 0 at
    1 - `first_frame`; with a motion-brush `region` (1 inside), the other frames free inside it only."""
    h, w = latent_size
    weights = torch.ones(batch, num_frames, 1, h, w)
    if region is not None:
        weights[:, 1:] = region.reshape(1, 1, 1, h, w)
    weights[:, 0] = 1.0 - first_frame
    return weights


def control_maps(kind: str | None, frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(F, 3, H, W) driving frames in [-1, 1] -> (F, 3, H, W) ControlNet condition maps in [0, 1], one per
    frame: `kind` 'canny' / 'depth' / 'pose' runs that preprocessor of utils/preprocess on every frame;
    None takes the frames as ready condition maps (an edge or pose video made elsewhere)."""
    from utils.preprocess.control import CONTROL_KINDS, control_image

    unit = ((frames.float() + 1) / 2).clamp(0, 1)
    if kind is None:
        return resize_control(unit, size)
    if kind not in CONTROL_KINDS:
        from utils.errors import did_you_mean

        raise UserError(f"unknown control kind '{kind}': {did_you_mean(kind, list(CONTROL_KINDS))}")
    return torch.cat([control_image(kind, unit[i:i + 1], size, what=f"control video frame {i}")
                      for i in range(unit.shape[0])])


def resize_control(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(F, 3, H, W) -> `size` (bilinear); condition maps for the ControlNet per frame."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False)


class FrameControl:
    """The MotionUNet with a ControlNet's residuals added, frame by frame: the ControlNet (an image model)
    sees every frame of the clip as an image with that frame's condition map, the motion modules then tie the
    frames together. Called as the MotionUNet is: (B, F, C, h, w), (B,) times, (B, L, D) text."""

    def __init__(self, unet: Any, controlnet: Any, maps: torch.Tensor, scale: float):
        self.unet, self.controlnet, self.maps, self.scale = unet, controlnet, maps, scale

    def __call__(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        b, f = x.shape[:2]
        if t.ndim == 0:
            t = t.expand(b)
        flat = x.reshape(b * f, *x.shape[2:])
        # frames are video-major in the flat batch; the (F, ...) maps repeat per video inside ControlNet
        res = self.controlnet(flat, t.repeat_interleave(f), context.repeat_interleave(f, dim=0),
                              None if y is None else y.repeat_interleave(f, dim=0), self.maps, self.scale)
        return self.unet(x, t, context, down_residuals=res.down, mid_residual=res.mid, y=y)


__all__ = ["FrameControl", "MOTIONS", "brush_mask", "control_maps", "feather", "load_frames", "motion_vector", "pin_weights",
           "resize_control", "warp_noise"]
