"""LPIPS against the `lpips` package: same random backbone, the shipped calibrated heads."""
from __future__ import annotations

import warnings

import pytest
import torch

from utils.metrics.lpips import LPIPS, backbone_cache_path, convert_lpips_state_dict, shipped_heads_path
from utils.errors import UserError, WeightsError

import lpips


def _reference(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return lpips.LPIPS(net=net, pnet_rand=True, verbose=False)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_reference(net):
    ref = _reference(net)
    ours = LPIPS(net, heads=True)
    # The heads load from the package on their own; the backbone comes through the converter.
    torch.testing.assert_close(ours.heads[0].weight, ref.lin0.model[1].weight)
    ours.load_state_dict(convert_lpips_state_dict(ref.state_dict()))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert ours(x, x).abs().max() < 1e-6


def test_lpips_baseline_without_heads_matches_reference():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net="alex", pnet_rand=True, lpips=False, verbose=False)
    ours = LPIPS("alex", heads=False)
    ours.load_state_dict(convert_lpips_state_dict(ref.state_dict()))
    x, y = torch.rand(2, 3, 48, 48) * 2 - 1, torch.rand(2, 3, 48, 48) * 2 - 1
    torch.testing.assert_close(ours(x, y), ref(x, y).flatten().detach(), atol=1e-5, rtol=0)


def test_gradients_flow_to_inputs():
    ours = LPIPS("alex")
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    ours(x * 2 - 1, torch.zeros(1, 3, 32, 32)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_from_pretrained_reads_the_torch_hub_cache(_private_torch_home):
    torch.manual_seed(0)
    import torchvision

    tv = torchvision.models.alexnet(weights=None)
    # A torchvision-style checkpoint (features only, to keep the file small).
    path = backbone_cache_path("alex")
    path.parent.mkdir(parents=True)
    torch.save({k: v for k, v in tv.state_dict().items() if k.startswith("features.")}, path)
    model = LPIPS.from_pretrained("alex")
    torch.testing.assert_close(model.features[0].weight, tv.features[0].weight)
    explicit = LPIPS.from_pretrained("alex", backbone_weights=path)
    torch.testing.assert_close(explicit.features[3].weight, tv.features[3].weight)


def test_from_pretrained_offline_without_cache_is_one_clear_line():
    with pytest.raises(WeightsError) as info:
        LPIPS.from_pretrained("vgg", download=False)
    msg = str(info.value)
    assert "\n" not in msg and "vgg16-397923af.pth" in msg and "backbone_weights" in msg
    with pytest.raises(WeightsError):  # HF_HUB_OFFLINE=1 (tests) turns downloading off by default
        LPIPS.from_pretrained("alex")
    with pytest.raises(WeightsError):
        LPIPS.from_pretrained("alex", backbone_weights="/nonexistent/alex.pth")
    with pytest.raises(UserError):
        LPIPS("squeezy")


def test_shipped_heads_found():
    assert shipped_heads_path("alex").name == "alex.pth"
    assert shipped_heads_path("vgg16").name == "vgg.pth"
