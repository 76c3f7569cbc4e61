"""The compiled pieces of a CPU training step against their PyTorch references: the fused
L1 + D-SSIM loss (`fused_loss.fused_gs_loss` vs `gs_loss(fused=False)`) and the fused Adam."""
from __future__ import annotations

import pytest
import torch

from models.generation_3d.gaussian_splatting.fused_loss import fused_gs_loss
from models.generation_3d.gaussian_splatting.training import gs_loss, make_adam


def _images(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    render = torch.rand(shape, generator=g, dtype=dtype)
    target = torch.rand(shape, generator=g, dtype=dtype)
    # flat regions (a white background in both) and an exact tie, where clamp and sign decide
    render[:, :6], target[:, :6] = 1.0, 1.0
    render[:, -1, -1] = target[:, -1, -1]
    return render, target


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape,lam", [((1, 40, 33, 3), 0.2), ((2, 9, 17, 3), 0.5), ((1, 25, 25, 4), 0.0)])
def test_fused_loss_matches_the_reference_value_and_gradient(dtype, shape, lam):
    render, target = _images(shape, dtype)
    r_ref, r_fused = render.clone().requires_grad_(), render.clone().requires_grad_()
    loss_ref, l1_ref = gs_loss(r_ref, target, lam, fused=False)
    loss, l1 = fused_gs_loss(r_fused, target, lam)
    assert loss.dtype == dtype and loss.shape == ()
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert abs(loss.item() - loss_ref.item()) < tol and abs(l1.item() - l1_ref.item()) < tol
    # both outputs carry gradient, as the reference's do
    (loss_ref + 0.7 * l1_ref).backward()
    (loss + 0.7 * l1).backward()
    scale = float(r_ref.grad.abs().max())
    assert scale > 0
    # gradients within 1e-4 of the largest (they are ~1/pixels each); float64 far tighter
    assert float((r_fused.grad - r_ref.grad).abs().max()) <= (1e-10 if dtype == torch.float64 else 1e-4) * scale


def test_gs_loss_picks_the_fused_pass_on_cpu_and_it_trains_the_same_direction():
    render, target = _images((1, 30, 30, 3), torch.float32, seed=3)
    r = render.clone().requires_grad_()
    loss, _ = gs_loss(r, target, 0.2)  # default: fused on CPU
    assert loss.grad_fn is not None and "Fused" in type(loss.grad_fn).__name__
    loss.backward()
    with torch.no_grad():
        stepped = r - 50.0 * r.grad
    assert gs_loss(stepped, target, 0.2, fused=False)[0].item() < loss.item()


def test_fused_loss_rejects_mismatched_images():
    with pytest.raises(ValueError, match="one shape"):
        fused_gs_loss(torch.rand(1, 8, 8, 3), torch.rand(1, 8, 9, 3), 0.2)


def test_fused_adam_matches_the_per_tensor_adam():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.randn(500, 3, generator=g))
    b = torch.nn.Parameter(a.detach().clone())
    start = a.detach().clone()
    fast, ref = make_adam(a, 1e-2), torch.optim.Adam([b], lr=1e-2, eps=1e-15)
    assert fast.defaults["fused"]
    for i in range(5):
        grad = torch.randn(500, 3, generator=g) * (i + 1)
        a.grad, b.grad = grad.clone(), grad.clone()
        fast.step()
        ref.step()
    assert (a - b).detach().abs().max().item() < 1e-6 and (a - start).detach().abs().max().item() > 1e-2
    # the state a densification strategy slices has the same keys and shapes
    assert set(fast.state[a]) == set(ref.state[b]) and fast.state[a]["exp_avg"].shape == (500, 3)
