"""GET3D's camera-conditioned RGB + silhouette discriminator in nv-tlabs' layout: the reference state dict
loads strictly and both logits match the golden fixture made by running nv-tlabs' code on CPU
(tests/fixtures/get3d/make_golden_discriminator.py) within 1e-4."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from models.generation_3d.get3d.discriminator import GET3DDiscriminator, encode_camera

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "get3d" / "golden_discriminator.safetensors"


def _d_and_gold():
    gold = load_file(str(GOLDEN))
    D = GET3DDiscriminator(c_dim=0, img_resolution=16, img_channels=3, architecture="skip", channel_base=128,
                           channel_max=32, num_fp16_res=0).eval()
    D.load_state_dict({k[6:]: v for k, v in gold.items() if k.startswith("state.")}, strict=True)
    return D, gold


def test_discriminator_matches_get3d():
    D, gold = _d_and_gold()
    with torch.no_grad():
        rgb, mask = D(gold["in.img"], gold["in.c"])
    for ours, ref in ((rgb, gold["out.rgb"]), (mask, gold["out.mask"])):
        assert ours.shape == ref.shape == (4, 1) and ref.abs().max() > 1e-2 and ref.std() > 1e-3
        assert (ours - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())


def test_each_branch_sees_only_its_channels_and_the_camera_matters():
    D, gold = _d_and_gold()
    img, c = gold["in.img"], gold["in.c"]
    with torch.no_grad():
        rgb, mask = D(img, c)
        other = img.clone()
        other[:, 3] += 1.0  # change the mask only
        rgb2, mask2 = D(other, c)
        rgb3, _ = D(img, c + 0.5)
    assert torch.equal(rgb, rgb2) and (mask - mask2).abs().max() > 1e-4
    assert (rgb - rgb3).abs().max() > 1e-4
    assert encode_camera(torch.zeros(1, 2)).tolist() == [[0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0]]
