"""3D metrics: renders reuse the image metrics; Chamfer / F-score / IoU on hand-checkable cases."""
from __future__ import annotations

import torch

from utils.metrics.lpips import LPIPS
from utils.metrics.metrics_3d import chamfer_distance, f_score, render_lpips, render_psnr, render_ssim, voxel_iou


def test_render_psnr_and_ssim_values():
    # a render off by 0.1 everywhere: MSE 0.01, PSNR 10 log10(1 / 0.01) = 20 dB
    target = torch.full((2, 3, 32, 32), 0.5)
    torch.testing.assert_close(render_psnr(target + 0.1, target), torch.full((2,), 20.0))
    # renders leave [0, 1] (an HDR background, overshooting splats): they are clamped before the metric
    torch.testing.assert_close(render_psnr(torch.full((1, 3, 8, 8), 1.7), torch.full((1, 3, 8, 8), 0.9)),
                               torch.tensor([20.0]))
    # flat images a and b: the structure term is 1, SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2
    a, b, c1 = 0.3, 0.6, 1e-4
    flat = lambda v: torch.full((1, 3, 24, 24), v, dtype=torch.float64)  # noqa: E731 (float32 E[x^2] - E[x]^2 rounds)
    got = render_ssim(flat(a), flat(b))
    torch.testing.assert_close(got, torch.tensor([(2 * a * b + c1) / (a * a + b * b + c1)], dtype=torch.float64))
    x = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(render_ssim(x, x), torch.ones(1))
    # the 3DGS code zero-pads: the border then has edges of different height in the two images
    assert render_ssim(flat(a), flat(b), padding="zeros") < got - 0.05


def test_render_lpips_matches_the_lpips_package_on_renders_in_0_1():
    import warnings

    import lpips

    from utils.metrics.lpips import convert_lpips_state_dict

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    model = LPIPS("alex")
    model.load_state_dict(convert_lpips_state_dict(ref.state_dict()))
    g = torch.Generator().manual_seed(1)
    render, target = torch.rand(2, 3, 48, 48, generator=g), torch.rand(2, 3, 48, 48, generator=g)
    with torch.no_grad():  # the package takes [-1, 1]; renders are in [0, 1]
        expected = ref(render * 2 - 1, target * 2 - 1).flatten()
    got = render_lpips(render, target, model=model)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert got.shape == (2,) and (got > 0).all()
    assert render_lpips(target, target, model=model).abs().max() < 1e-6


def test_chamfer_known_values():
    a = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    b = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 2, 0]])
    # a -> b: both 0; b -> a: 0, 0, 2 (squared 4) -> mean 4/3
    assert torch.allclose(chamfer_distance(a, b), torch.tensor([4 / 3]))
    assert torch.allclose(chamfer_distance(a, b, squared=False), torch.tensor([2 / 3]))
    pts = torch.rand(2, 50, 3)
    assert torch.allclose(chamfer_distance(pts, pts), torch.zeros(2))
    assert chamfer_distance(pts, pts + 0.1).shape == (2,)


def test_chamfer_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 40, 3, generator=g), torch.rand(1, 30, 3, generator=g)
    d = ((a[0, :, None] - b[0, None]) ** 2).sum(-1)
    expected = d.min(1).values.mean() + d.min(0).values.mean()
    torch.testing.assert_close(chamfer_distance(a, b)[0], expected, atol=1e-6, rtol=0)


def test_f_score():
    target = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    pred = torch.tensor([[0.0, 0, 0.005], [1, 0, 0], [5, 5, 5]])
    f, p, r = f_score(pred, target, threshold=0.01)
    assert torch.allclose(p, torch.tensor([2 / 3])) and torch.allclose(r, torch.tensor([0.5]))
    assert torch.allclose(f, torch.tensor([2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)]))
    f, _, _ = f_score(pred + 100, target)
    assert f.item() == 0


def test_voxel_iou():
    a = torch.zeros(4, 4, 4, dtype=torch.bool)
    b = torch.zeros(4, 4, 4, dtype=torch.bool)
    a[:2] = True  # 32 voxels
    b[1:3] = True  # 32 voxels, 16 shared
    assert torch.allclose(voxel_iou(a, b), torch.tensor([16 / 48]))
    assert voxel_iou(a.float() * 0.9, a.float()).item() == 1.0
    assert voxel_iou(torch.zeros(2, 3, 3, 3), torch.zeros(2, 3, 3, 3)).tolist() == [1.0, 1.0]
