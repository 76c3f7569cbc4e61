"""The CPU Gaussian rasterizers (pure PyTorch, and compiled with numba): against closed forms,
gsplat's reference functions, finite differences, and (on a GPU) gsplat's CUDA rasterization.
tests/utils/rendering/test_gaussian_rasterizer_numba.py compares the two CPU backends directly."""
from __future__ import annotations

import math

import pytest
import torch

from utils.rendering.cameras import Cameras, intrinsics_from_fov, orbit_cameras
from utils.rendering.splat_projection import fully_fused_projection, quat_scale_to_covar_preci
from utils.rendering.splatting import RasterConfig, rasterization


def _scene(n: int = 40, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * 1.2
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.1 + 0.03
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.8 + 0.1
    sh = torch.randn(n, 16, 3, generator=g, dtype=dtype) * 0.3
    return means, quats, scales, opacities, sh


def _cams(n: int = 2, size: int = 32, dtype=torch.float32) -> Cameras:
    cams = orbit_cameras(n, 3.0, size, size + 8, fov_x=math.radians(50), elevation=math.radians(20))
    return cams.to(dtype=dtype)


def test_quat_scale_to_covar_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    means, quats, scales, _, _ = _scene(64)
    ours_c, ours_p = quat_scale_to_covar_preci(quats, scales, compute_preci=True)
    ref_c, ref_p = _quat_scale_to_covar_preci(quats, scales)
    assert torch.allclose(ours_c, ref_c, atol=1e-6)
    assert torch.allclose(ours_p, ref_p, rtol=1e-4, atol=1e-3)


def test_projection_matches_gsplat_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection

    means, quats, scales, _, _ = _scene(200)
    cams = _cams(3)
    covars, _ = quat_scale_to_covar_preci(quats, scales)
    ours = fully_fused_projection(means, covars, cams.viewmats, cams.Ks, cams.width, cams.height)
    ref = _fully_fused_projection(means, covars, cams.viewmats, cams.Ks, cams.width, cams.height)
    radii, means2d, depths, conics, _ = ours
    r_radii, r_means2d, r_depths, r_conics, _ = ref
    assert torch.allclose(means2d, r_means2d, atol=1e-4)
    assert torch.allclose(depths, r_depths, atol=1e-6)
    assert torch.allclose(conics, r_conics, rtol=1e-4, atol=1e-5)
    assert torch.equal(radii, r_radii)


def test_single_gaussian_matches_closed_form():
    # an isotropic Gaussian on the optical axis: its screen footprint is a circular Gaussian of
    # variance (f s / z)^2 + eps2d, centred at the principal point
    size, f, z, s, o = 33, 40.0, 2.0, 0.1, 0.8
    K = torch.tensor([[[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]])
    viewmat = torch.eye(4)[None]
    color, bg = torch.tensor([[0.2, 0.6, 0.9]]), torch.tensor([[1.0, 0.5, 0.0]])
    img, alpha, _ = rasterization(torch.tensor([[0.0, 0.0, z]]), torch.tensor([[1.0, 0, 0, 0]]),
                                  torch.full((1, 3), s), torch.tensor([o]), color, viewmat, K, size, size,
                                  backgrounds=bg, config=RasterConfig(backend="torch"))
    var = (f * s / z) ** 2 + 0.3
    px = torch.arange(size) + 0.5 - size / 2
    d2 = px[:, None] ** 2 + px[None, :] ** 2
    a = (o * torch.exp(-0.5 * d2 / var)).clamp(max=0.999)
    a = torch.where(a >= 1 / 255, a, torch.zeros_like(a))
    # beyond the 3.33-sigma extent (rounded up to whole pixels) nothing is drawn
    expected = a[..., None] * color + (1 - a[..., None]) * bg
    assert torch.allclose(alpha[0, ..., 0], a, atol=1e-5)
    assert torch.allclose(img[0], expected, atol=1e-5)


def test_depth_modes():
    z = 2.5
    K = intrinsics_from_fov(math.radians(60), 16, 16)[None]
    args = (torch.tensor([[0.0, 0.0, z]]), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.3),
            torch.tensor([0.9]), torch.ones(1, 3), torch.eye(4)[None], K, 16, 16)
    rgbd, alpha, _ = rasterization(*args, render_mode="RGB+D")
    ed, _, _ = rasterization(*args, render_mode="ED")
    d, _, _ = rasterization(*args, render_mode="D")
    assert rgbd.shape[-1] == 4 and ed.shape[-1] == 1
    assert torch.allclose(rgbd[..., 3:], alpha * z, atol=1e-5)
    assert torch.allclose(d, alpha * z, atol=1e-5)
    covered = alpha[..., 0] > 0.01
    assert torch.allclose(ed[..., 0][covered], torch.full_like(ed[..., 0][covered], z), atol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_tile_size_does_not_change_the_image(backend):
    means, quats, scales, opacities, sh = _scene(80)
    cams = _cams(2)
    outs = [rasterization(means, quats, scales, opacities, sh, cams.viewmats, cams.Ks, cams.width, cams.height,
                          sh_degree=3, backgrounds=torch.ones(2, 3), config=RasterConfig(tile_size=ts, backend=backend))[0]
            for ts in (2, 4, 16)]
    assert torch.allclose(outs[0], outs[1], atol=1e-5) and torch.allclose(outs[1], outs[2], atol=1e-5)


def test_sorting_by_depth():
    # two overlapping opaque Gaussians: the nearer one's colour wins whatever their order in memory
    K = intrinsics_from_fov(math.radians(60), 8, 8)[None]
    means = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 2.0]])
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    img, _, _ = rasterization(means, torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2, 3), 0.5),
                              torch.tensor([0.99, 0.99]), colors, torch.eye(4)[None], K, 8, 8)
    assert img[0, 4, 4, 2] > 0.85 and img[0, 4, 4, 0] < 0.1


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_gradients_match_finite_differences(backend):
    means, quats, scales, opacities, sh = _scene(3, seed=3, dtype=torch.float64)
    sh = sh[:, :4]
    cams = _cams(1, size=12, dtype=torch.float64)
    bg = torch.tensor([[0.3, 0.5, 0.7]], dtype=torch.float64)
    weights = torch.rand(1, cams.height, cams.width, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def f(m, q, s, o, c):
        img, _, _ = rasterization(m, q, s, o, c, cams.viewmats, cams.Ks, cams.width, cams.height, sh_degree=1,
                                  backgrounds=bg, config=RasterConfig(backend=backend))
        return (img * weights).sum()

    inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opacities, sh)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # hundreds of tiny renders: threads only add synchronisation
    try:
        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_cpu_backend_matches_gsplat_cuda(backend):
    means, quats, scales, opacities, sh = _scene(300)
    cams = _cams(2, size=64)
    bg = torch.ones(2, 3)
    cpu, cpu_a, _ = rasterization(means, quats, scales, opacities, sh, cams.viewmats, cams.Ks, cams.width,
                                  cams.height, sh_degree=3, backgrounds=bg, config=RasterConfig(backend=backend))
    dev = [t.cuda() for t in (means, quats, scales, opacities, sh)]
    gpu, gpu_a, _ = rasterization(*dev, cams.viewmats.cuda(), cams.Ks.cuda(), cams.width, cams.height, sh_degree=3,
                                  backgrounds=bg.cuda(), config=RasterConfig(backend="gsplat"))
    # the kernels differ only in float rounding and in the exact extent used for tile culling
    assert (cpu - gpu.cpu()).abs().max() < 2e-2
    assert (cpu - gpu.cpu()).abs().mean() < 1e-3
    assert (cpu_a - gpu_a.cpu()).abs().mean() < 1e-3
