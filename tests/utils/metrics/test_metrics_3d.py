"""3D metrics: renders reuse the image metrics; Chamfer / F-score / IoU on hand-checkable cases."""
from __future__ import annotations

import torch

from utils.metrics.image_metrics import psnr, ssim
from utils.metrics.lpips import LPIPS
from utils.metrics.metrics_3d import chamfer_distance, f_score, render_lpips, render_psnr, render_ssim, voxel_iou


def test_render_metrics_reuse_image_metrics():
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(render_psnr(a, b), psnr(a, b))
    torch.testing.assert_close(render_ssim(a, b), ssim(a, b))
    model = LPIPS("alex")
    torch.testing.assert_close(render_lpips(a, b, model=model), model(a * 2 - 1, b * 2 - 1))


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
