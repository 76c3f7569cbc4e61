"""The motion brush on the tiny preset: outside the mask the clip stays the still image, inside it the noise moved
by the named motion carries the content that way (phase correlation of consecutive frames inside the mask); the
named and dx,dy motions, and the bad inputs (mask of another size than the image, unknown motion)."""
from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from models.video_generation.runway_gen3 import controls
from models.video_generation.runway_gen3.pipeline import RunwayGen3Pipeline
from utils.errors import UserError

SIZE = 64
BOX = (slice(12, 52), slice(8, 48))  # rows, columns of the region that moves (white in the mask)


@pytest.fixture(scope="module")
def tiny():
    return RunwayGen3Pipeline.from_pretrained(preset="tiny", device="cpu")


def _still() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    img = torch.stack([xx / SIZE, yy / SIZE, torch.full((SIZE, SIZE), 0.3)]).float()
    img[:, 20:40, 14:30] = 0.9
    return img[None]


def _mask_png(path, size=(SIZE, SIZE)) -> str:
    m = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
    m[BOX] = 255
    Image.fromarray(m.numpy()).resize(size[::-1], Image.NEAREST).save(path)
    return str(path)


def _shift_x(a: torch.Tensor, b: torch.Tensor) -> float:
    """Horizontal shift of b relative to a (positive: b is a moved right) by phase correlation, Hann-windowed."""
    h, w = a.shape
    win = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None]
    fa, fb = torch.fft.fft2((a - a.mean()) * win), torch.fft.fft2((b - b.mean()) * win)
    cross = fb * fa.conj()
    r = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-9)).real
    dx = int(r.sum(0).argmax())  # peak column of the correlation surface
    return float(dx - w if dx > w // 2 else dx)


def _brush(tiny, mask, motion, **kw):
    return tiny("waves", image=_still(), motion_mask=mask, motion=motion, num_frames=6, height=SIZE, width=SIZE,
                steps=3, seed=4, progress=False, **kw).pixels[0]  # (F, 3, H, W)


def test_outside_the_mask_stays_still_inside_it_moves_right(tiny, tmp_path):
    video = _brush(tiny, _mask_png(tmp_path / "m.png"), "right")
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    inside[BOX] = True
    change = (video[1:] - video[:-1]).abs().mean(1)  # (F-1, H, W) mean over colours
    moved_in, moved_out = change[:, inside].mean(), change[:, ~inside].mean()
    assert moved_in > 1e-3
    assert moved_out <= moved_in / 10
    grey = video.mean(1)[:, BOX[0], BOX[1]]
    shifts = [_shift_x(grey[k], grey[k + 1]) for k in range(1, len(grey) - 1)]  # frame 0 is the still itself
    assert sum(shifts) / len(shifts) > 0, shifts
    # 'right' is a quarter of the width per second: 16 px / 8 fps = 2 px a frame (1 latent pixel)
    assert all(abs(s - 2.0) <= 1.0 for s in shifts), shifts
    left = _brush(tiny, _mask_png(tmp_path / "m.png"), "left").mean(1)[:, BOX[0], BOX[1]]
    assert sum(_shift_x(left[k], left[k + 1]) for k in range(1, len(left) - 1)) < 0


def test_without_the_paste_back_the_background_moves_only_by_the_decoders_reach(tiny, tmp_path):
    """brush_paste=False: the latents outside are still pinned (identical in every frame), the decoded pixels
    outside move only through the VAE decoder's reach (its attention): less than the region, more than with it."""
    mask = _mask_png(tmp_path / "m.png")
    out = tiny("waves", image=_still(), motion_mask=mask, motion="right", num_frames=3, height=SIZE, width=SIZE,
               steps=2, seed=4, progress=False, brush_paste=False)
    lat = out.latents[0]
    inside = controls.brush_mask(mask, (SIZE, SIZE), lat.shape[-2:])[0, 0].bool()
    assert (lat[1:] - lat[:-1]).abs()[:, :, ~inside].max() <= 1e-5
    assert (lat[1:] - lat[:-1]).abs()[:, :, inside].mean() > 1e-2


def test_motions_named_and_per_second():
    assert controls.motion_vector("right", (64, 128)) == ("translate", 32.0, 0.0)
    assert controls.motion_vector("up", (64, 128)) == ("translate", 0.0, -16.0)
    assert controls.motion_vector("zoom-in", (64, 64))[0] == "zoom"
    assert controls.motion_vector("3,-4", (64, 64)) == ("translate", 3.0, -4.0)
    noise = torch.randn(1, 4, 8, 8)
    moved = controls.warp_noise(noise, 3, "translate", 16.0, 0.0, fps=8, downscale=2)  # 1 latent pixel a frame
    assert torch.equal(moved[:, 2], torch.roll(noise, 2, dims=-1))
    zoom = controls.warp_noise(noise, 3, "zoom", 2.0, 0.0, fps=1, downscale=2)
    assert torch.equal(zoom[:, 0], noise) and zoom.shape == (1, 3, 4, 8, 8)
    for bad in ("sideways", "1,2,3", "a,b"):
        with pytest.raises(UserError, match="motion"):
            controls.motion_vector(bad, (64, 64))


def test_zoom_in_moves_noise_away_from_the_centre():
    """zoom-in: frame k's noise at p is frame 0's at c + (p - c) / s**t, so a noise feature off the centre lands
    farther out in later frames (zoom-out: nearer; it drops noise pixels, a limit in the README)."""
    noise = torch.zeros(1, 1, 33, 33)
    noise[0, 0, 16, 22] = 1.0  # 6 latent pixels right of the centre
    for motion, farther in (("zoom-in", True), ("zoom-out", False)):
        kind, a, _ = controls.motion_vector(motion, (66, 66))
        moved = controls.warp_noise(noise, 5, kind, a, 0.0, fps=1, downscale=2)  # 1 s per frame: 1.25 ** k
        cols = [float((moved[0, k, 0, 16] * torch.arange(33)).sum() / moved[0, k, 0, 16].sum()) for k in range(5)]
        # zoom-out subsamples the noise (nearest pixel), so a single feature can drop out: frame 3 is compared
        assert (cols[4] > cols[0] + 4) if farther else (cols[3] < cols[0] - 2), cols


def test_without_a_direction_the_region_moves_freely_and_the_rest_stays(tiny, tmp_path):
    out = tiny("waves", image=_still(), motion_mask=_mask_png(tmp_path / "m.png"), num_frames=3, height=SIZE,
               width=SIZE, steps=2, seed=4, progress=False).pixels[0]
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    inside[BOX] = True
    change = (out[2] - out[1]).abs().mean(0)
    assert change[inside].mean() > 1e-3 and change[~inside].mean() <= change[inside].mean() / 10


def test_a_mask_of_another_size_is_refused_in_one_line(tiny, tmp_path):
    with pytest.raises(UserError, match="same width and height"):
        _brush(tiny, _mask_png(tmp_path / "small.png", (32, 32)), "right")
    with pytest.raises(UserError, match="not found"):
        _brush(tiny, tmp_path / "missing.png", "right")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        controls.brush_mask(torch.zeros(64, 64), (64, 64), (32, 32))
    assert any("all black" in str(w.message) for w in seen)
