"""Latent editing and projection of StyleGAN (models/gan/stylegan3/editing.py, projection.py).

GANSpace's directions are the principal axes of W with their spreads as units; InterFaceGAN recovers a
direction planted in the labels, and with a user's classifier moves images the way the classifier scores
them; directions survive a safetensors round trip; projection of a generated image finds it again
(LPIPS-VGG below 0.1, and far below an unrelated image's).
"""
from __future__ import annotations

import pytest
import torch

from models.gan.stylegan3.editing import (Directions, apply_direction, ganspace, interfacegan,
                                          interfacegan_from_classifier, sample_w)
from models.gan.stylegan3.pipeline import StyleGANPipeline
from utils.errors import UserError, WeightsError


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return StyleGANPipeline.from_pretrained(preset="tiny", device="cpu")


def test_ganspace_gives_the_principal_axes_of_w(tiny, tmp_path):
    d = ganspace(tiny, num_components=4, num_samples=600, seed=1)
    assert d.names == ("pc0", "pc1", "pc2", "pc3") and d.method == "ganspace"
    assert torch.allclose(d.vectors @ d.vectors.t(), torch.eye(4), atol=1e-5)  # orthonormal
    assert all(d.scales[i] >= d.scales[i + 1] > 0 for i in range(3))  # sorted by spread
    _, w = sample_w(tiny, 600, seed=1)
    spread = ((w - d.mean) @ d.vectors.t()).std(0)
    assert torch.allclose(spread, d.scales, rtol=1e-3)  # the unit of strength is the std along each axis
    again = Directions.load(d.save(tmp_path / "pca.safetensors"))
    assert torch.equal(again.vectors, d.vectors) and torch.equal(again.scales, d.scales) and again.names == d.names
    assert again.info["explained_variance"] == pytest.approx(d.info["explained_variance"])
    assert torch.equal(ganspace(tiny, 4, 600, seed=1).vectors, d.vectors)  # the same file every run


def test_apply_direction_moves_the_chosen_styles_by_the_strength(tiny):
    d = ganspace(tiny, num_components=2, num_samples=300)
    ws = tiny.map(tiny.seed_latents([3]))
    moved = apply_direction(ws, d, "pc1", strength=2.0, layers=range(3))
    step = (moved - ws)[0]
    assert torch.allclose(step[:3], (2.0 * d.scales[1] * d.vectors[1]).expand(3, -1), atol=1e-6)
    assert torch.equal(step[3:], torch.zeros_like(step[3:]))
    assert not torch.equal(tiny(ws=moved).pixels, tiny(ws=ws).pixels)
    with pytest.raises(UserError, match="no direction 'smile'"):
        apply_direction(ws, d, "smile")
    with pytest.raises(UserError, match="another network"):
        apply_direction(torch.zeros(1, 5, 7), d, 0)


def test_interfacegan_recovers_a_planted_direction(tiny):
    _, w = sample_w(tiny, 400, seed=2)
    planted = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(0))
    planted = planted / planted.norm()
    score = (w - w.mean(0)) @ planted
    labels = (score > score.median()).long()
    d = interfacegan(w, labels, "planted")
    assert float(d.vectors[0] @ planted) > 0.9  # the boundary's normal is the planted axis, pointing to label 1
    assert d.info["train_accuracy"] > 0.95
    other = torch.zeros(w.shape[1])
    other[0] = 1.0
    ortho = interfacegan(w, labels, "planted", orthogonal_to=other)
    assert abs(float(ortho.vectors[0, 0])) < 1e-6 and float(ortho.vectors[0].norm()) == pytest.approx(1.0)
    with pytest.raises(UserError, match="both classes"):
        interfacegan(w, torch.ones(400, dtype=torch.long))


def test_interfacegan_with_a_users_classifier_moves_what_it_scores():
    torch.manual_seed(0)
    sg2 = StyleGANPipeline.from_pretrained(preset="tiny-stylegan2", device="cpu")

    def brightness(images: torch.Tensor) -> torch.Tensor:  # any classifier: images in [-1, 1] -> one score each
        return images.mean(dim=(1, 2, 3))

    d = interfacegan_from_classifier(sg2, brightness, "bright", num_samples=120, ratio=0.25)
    assert d.info["num_samples"] == 60  # the top and bottom quarters of the scores
    ws = sg2.map(sg2.seed_latents([0, 1, 2, 3]))
    up = sg2.synthesize(apply_direction(ws, d, "bright", 3.0))
    down = sg2.synthesize(apply_direction(ws, d, "bright", -3.0))
    assert (brightness(up) > brightness(down) + 0.5).all()


def test_a_directions_file_is_checked(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(WeightsError, match="not found"):
        Directions.load(tmp_path / "none.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsError, match="not a StyleGAN directions file"):
        Directions.load(tmp_path / "other.safetensors")


def _projection(pipe, steps: int, seed: int):
    from models.gan.stylegan3.projection import project
    from utils.metrics.lpips import LPIPS

    torch.manual_seed(0)
    lpips = LPIPS("vgg").eval()  # LPIPS-VGG with the shipped heads; its backbone random here (no download)
    ws = pipe.map(pipe.seed_latents([seed]))
    target = pipe.synthesize(ws)
    result = project(pipe, target, num_steps=steps, distance=lpips, w_avg_samples=1000, save_every=5, progress=False)
    other = float(lpips(pipe.synthesize(pipe.map(pipe.seed_latents([11]))), target))
    assert result.distance < 0.1 and result.distance < 0.5 * other, (result.distance, other)
    assert result.ws.shape == ws.shape and torch.equal(result.ws[0, 0], result.ws[0, -1])  # W: one w for all
    assert len(result.history) == len(range(0, steps, 5)) + 1  # every 5th step and the last, for the video
    return result, target, lpips


def test_projection_recovers_a_generated_stylegan2_image():
    torch.manual_seed(0)
    sg2 = StyleGANPipeline.from_pretrained(preset="tiny-stylegan2", device="cpu")
    result, target, lpips = _projection(sg2, steps=10, seed=3)
    for n in result.noise.values():  # the optimised noise maps, renormalised after every step
        assert abs(float(n.mean())) < 1e-4 and abs(float(n.square().mean()) - 1) < 1e-4
    assert result.noise
    assert not any(b.requires_grad for b in sg2.generator.buffers())  # the pipeline's own network is untouched
    from models.gan.stylegan3.projection import project

    with pytest.raises(UserError, match="the target must be"):
        project(sg2, torch.zeros(1, 3, 16, 16), num_steps=1, distance=lpips)


@pytest.mark.slow
def test_projection_recovers_a_generated_stylegan3_image(tiny):
    result, target, _ = _projection(tiny, steps=20, seed=3)
    assert torch.allclose(tiny.synthesize(result.ws), result.image, atol=1e-5)
