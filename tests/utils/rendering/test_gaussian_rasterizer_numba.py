"""The compiled (numba) CPU rasterizer against the pure-PyTorch one it must reproduce: images
within 1e-5, gradients within 1e-4, on random scenes, a tile holding thousands of Gaussians
with pixels that terminate early, every render mode, antialiasing, and any thread count."""
from __future__ import annotations

import math

import pytest
import torch

from utils.rendering import splat_numba, splat_raster
from utils.rendering.cameras import orbit_cameras
from utils.rendering.splat_projection import fully_fused_projection, quat_scale_to_covar_preci
from utils.rendering.splat_raster import isect_offset_encode, isect_tiles
from utils.rendering.splatting import RasterConfig, rasterization, resolve_backend


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scene(n: int, seed: int = 0, dtype=torch.float32, spread: float = 1.2, scale: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    means = ((torch.rand(n, 3, generator=g) - 0.5) * spread).to(dtype)
    quats = torch.randn(n, 4, generator=g).to(dtype)
    scales = (torch.rand(n, 3, generator=g) * scale + 0.3 * scale).to(dtype)
    opacities = (torch.rand(n, generator=g) * 0.8 + 0.1).to(dtype)
    sh = (torch.randn(n, 16, 3, generator=g) * 0.3).to(dtype)
    return means, quats, scales, opacities, sh


def _projected(n: int, size: int, tile: int, seed: int = 0, spread: float = 1.2, scale: float = 0.1,
               opacity_floor: float = 0.1):
    means, quats, scales, opacities, _ = _scene(n, seed, spread=spread, scale=scale)
    opacities = opacities.clamp(min=opacity_floor)
    cams = orbit_cameras(2, 3.0, size, size + 8, fov_x=math.radians(50), elevation=math.radians(20))
    covars, _ = quat_scale_to_covar_preci(quats, scales)
    radii, means2d, depths, conics, _ = fully_fused_projection(means, covars, cams.viewmats, cams.Ks, cams.width,
                                                               cams.height, opacities=opacities)
    tw, th = math.ceil(cams.width / tile), math.ceil(cams.height / tile)
    _, isect_ids, flatten_ids = isect_tiles(means2d, radii, depths, tile, tw, th)
    offsets = isect_offset_encode(isect_ids, 2, tw, th)
    colors = torch.rand(2, n, 3, generator=torch.Generator().manual_seed(seed + 1))
    return (means2d.detach(), conics.detach(), colors, opacities[None].expand(2, n).contiguous(), cams.width,
            cams.height, tile, offsets, isect_ids, flatten_ids)


def _both(args, backgrounds=None, seed=0):
    """Images, alphas and the gradients of a weighted loss through each backend."""
    C, H, W = 2, args[5], args[4]
    g = torch.Generator().manual_seed(seed + 7)
    w_rgb, w_a = torch.rand(C, H, W, 3, generator=g), torch.rand(C, H, W, 1, generator=g)
    out = {}
    for name, mod in (("torch", splat_raster), ("numba", splat_numba)):
        leaves = [t.clone().requires_grad_() for t in args[:4]]
        img, alpha = mod.rasterize_to_pixels(*leaves, *args[4:], backgrounds=backgrounds)
        ((img * w_rgb).sum() + (alpha * w_a).sum()).backward()
        out[name] = (img.detach(), alpha.detach(), [t.grad for t in leaves])
    return out


def _assert_match(out):
    (ti, ta, tg), (ni, na, ng) = out["torch"], out["numba"]
    assert (ti - ni).abs().max() <= 1e-5 and (ta - na).abs().max() <= 1e-5
    for name, a, b in zip(("means2d", "conics", "colors", "opacities"), tg, ng):
        assert (a - b).abs().max() <= 1e-4, name
        assert a.abs().max() > 0, name  # the gradient is not trivially zero


def test_rasterize_to_pixels_matches_torch_on_a_random_scene():
    args = _projected(600, 48, 16)
    _assert_match(_both(args, backgrounds=torch.tensor([[0.2, 0.4, 0.6], [1.0, 1.0, 1.0]])))


def test_thousands_of_gaussians_in_a_tile_and_early_termination(monkeypatch):
    # 3,000 small, opaque Gaussians packed in front of the camera: tiles hold thousands of
    # intersections and many pixels reach the transmittance floor before the end of their list
    args = _projected(3000, 32, 16, seed=2, spread=0.5, scale=0.05, opacity_floor=0.6)
    counts = torch.bincount(args[8], minlength=2 * 3 * 2)
    assert counts.max() > 2000
    out = _both(args)
    _assert_match(out)
    # early termination is exercised: without it the reference's image moves by more than the
    # tolerance (the rest of a stopped pixel weighs at most 1e-4), so a kernel that did not stop
    # where the reference stops would fail the comparison above
    monkeypatch.setattr(splat_raster, "MIN_TRANSMITTANCE", 1e-30)
    img_no_stop, _ = splat_raster.rasterize_to_pixels(*args)
    moved = (img_no_stop - out["torch"][0]).abs().amax(-1)
    assert moved.max() > 1e-5 and int((moved > 1e-6).sum()) > 20


def test_full_rasterization_matches_torch_in_every_mode():
    means, quats, scales, opacities, sh = _scene(400, seed=3)
    cams = orbit_cameras(2, 3.0, 40, 36, fov_x=math.radians(50), elevation=math.radians(20))
    for mode, aa in (("RGB", False), ("RGB", True), ("RGB+ED", False), ("D", False)):
        res = {}
        for backend in ("torch", "numba"):
            leaves = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, sh)]
            img, alpha, info = rasterization(*leaves, cams.viewmats, cams.Ks, 40, 36, sh_degree=3,
                                             backgrounds=torch.ones(2, 3), render_mode=mode,
                                             config=RasterConfig(backend=backend, tile_size=8, antialiased=aa))
            (img.sum() + alpha.sum()).backward()
            assert info["backend"] == backend
            res[backend] = (img.detach(), alpha.detach(), info["radii"], info["means2d"].grad,
                            [t.grad for t in leaves])
        t, n = res["torch"], res["numba"]
        assert torch.equal(t[2], n[2]), mode
        assert (t[0] - n[0]).abs().max() <= 1e-5 and (t[1] - n[1]).abs().max() <= 1e-5, mode
        assert (t[3] - n[3]).abs().max() <= 1e-4, mode
        for name, a, b in zip(("means", "quats", "scales", "opacities", "sh"), t[4], n[4]):
            if mode == "D" and name == "sh":  # colours are not rendered
                assert a is None and b is None
                continue
            # float32 through projection: compare relative to the gradient's size
            assert (a - b).abs().max() <= 1e-4 * max(1.0, float(a.abs().max())), (mode, aa, name)


def test_gradients_match_in_float64():
    means, quats, scales, opacities, sh = _scene(120, seed=4, dtype=torch.float64)
    cams = orbit_cameras(1, 3.0, 24, 24, fov_x=math.radians(50), elevation=math.radians(20)).to(dtype=torch.float64)
    grads = {}
    for backend in ("torch", "numba"):
        leaves = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, sh)]
        img, _, _ = rasterization(*leaves, cams.viewmats, cams.Ks, 24, 24, sh_degree=2,
                                  backgrounds=torch.ones(1, 3, dtype=torch.float64),
                                  config=RasterConfig(backend=backend, antialiased=True))
        (img * torch.linspace(0, 1, 24, dtype=torch.float64)[:, None, None]).sum().backward()
        grads[backend] = [t.grad for t in leaves]
    for a, b in zip(grads["torch"], grads["numba"]):
        assert (a - b).abs().max() <= 1e-8 * max(1.0, float(a.abs().max()))


def test_result_does_not_depend_on_the_number_of_threads():
    args = _projected(500, 40, 8, seed=5)
    outs = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        leaves = [t.clone().requires_grad_() for t in args[:4]]
        img, alpha = splat_numba.rasterize_to_pixels(*leaves, *args[4:])
        (img.sum() + alpha.sum()).backward()
        outs.append([img.detach()] + [t.grad for t in leaves])
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_auto_picks_numba_on_cpu_and_refuses_other_devices():
    assert resolve_backend("auto", torch.device("cpu")) == "numba"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="numba backend renders CPU tensors"):
        resolve_backend("numba", torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown rasterizer backend"):
        resolve_backend("opengl", torch.device("cpu"))


def test_tile_lists_match_the_reference_exactly():
    means, quats, scales, opacities, _ = _scene(700, seed=6)
    cams = orbit_cameras(3, 3.0, 50, 40, fov_x=math.radians(50), elevation=math.radians(20))
    covars, _ = quat_scale_to_covar_preci(quats, scales)
    radii, means2d, depths, _, _ = fully_fused_projection(means, covars, cams.viewmats, cams.Ks, 50, 40,
                                                          opacities=opacities)
    for tile in (4, 16):
        tw, th = math.ceil(50 / tile), math.ceil(40 / tile)
        _, ids, flat = isect_tiles(means2d, radii, depths, tile, tw, th)
        offsets = isect_offset_encode(ids, 3, tw, th)
        n_ids, n_flat, n_offsets = splat_numba.isect_tiles(means2d, radii, depths, tile, tw, th)
        assert ids.numel() > 1000
        assert torch.equal(ids, n_ids) and torch.equal(flat, n_flat) and torch.equal(offsets, n_offsets)
