"""Training the triplane GANs: the built-in multi-view set, the consistency score, the recipe and YAML keys."""
import json

import pytest
import torch
from PIL import Image

from models.gan.aetherist.config import PRESETS
from models.gan.aetherist.data import CameraFolderDataset, PrimitivesDataset
from models.gan.aetherist.training import fit, recipe, settings_from_yaml
from utils.errors import UserError
from utils.metrics.consistency_3d import (consistency_report, consistency_score, normalized_reprojection_error,
                                         reprojection_error)


@pytest.fixture(scope="module")
def views():
    return PrimitivesDataset(num_scenes=4, resolution=48, seed=1)


def test_consistency_is_near_100_for_views_of_one_scene_and_drops_for_shuffled_views(views):
    def score(i, j):
        a, b = views[i], views[j]
        # the silhouette's pixels mix object and background under bilinear reads: left out (1 px erosion)
        inner = -torch.nn.functional.max_pool2d(-a["mask"][None], 3, 1, 1)
        return consistency_score(a["image"][None], a["depth"][None], a["camera"][None], b["image"][None],
                                 b["camera"][None], inner, depth_b=b["depth"][None])

    same = [score(2 * k, 2 * k + 1) for k in range(4)]
    shuffled = [score(2 * k, (2 * k + 3) % 8) for k in range(4)]
    assert min(same) > 90, same
    assert max(shuffled) < 60, shuffled
    a, b, other = views[0], views[1], views[3]
    err = reprojection_error(a["image"][None], a["depth"][None], a["camera"][None], b["image"][None],
                             b["camera"][None], a["mask"][None], depth_b=b["depth"][None])
    err_other = reprojection_error(a["image"][None], a["depth"][None], a["camera"][None], other["image"][None],
                                   other["camera"][None], a["mask"][None])
    assert err < 0.25 * err_other


def test_a_constant_or_blurred_out_render_does_not_count_as_consistent(views):
    # the raw score rewards featureless renders; the gap (score - chance level) does not
    def report(img_a, img_b, a, b):
        inner = -torch.nn.functional.max_pool2d(-a["mask"][None], 3, 1, 1)
        return consistency_report(img_a, a["depth"][None], a["camera"][None], img_b, b["camera"][None], inner,
                                  depth_b=b["depth"][None])

    def blur_out(x):  # a near-uniform field (an untrained generator's) with a faint trace of the image's structure
        return 0.3 + 0.02 * (x - x.mean((2, 3), keepdim=True))

    for k in range(4):
        a, b = views[2 * k], views[2 * k + 1]
        sharp = report(a["image"][None], b["image"][None], a, b)
        const = torch.full_like(a["image"][None], 0.3)
        flat = report(const, const, a, b)
        blurred = report(blur_out(a["image"][None]), blur_out(b["image"][None]), a, b)
        assert sharp["score"] > 90 and sharp["gap"] > 50 and sharp["chance"] < 40, sharp
        for trivial in (flat, blurred):
            assert trivial["score"] > 95, trivial  # the raw score alone would call it consistent
            assert abs(trivial["gap"]) < 2 and trivial["gap"] < sharp["gap"] - 45, trivial
        assert sharp["score"] == pytest.approx(consistency_score(
            a["image"][None], a["depth"][None], a["camera"][None], b["image"][None], b["camera"][None],
            -torch.nn.functional.max_pool2d(-a["mask"][None], 3, 1, 1), depth_b=b["depth"][None]), abs=1e-4)
    # nothing valid: zeros, not NaN
    a, b = views[0], views[1]
    empty = consistency_report(a["image"][None], a["depth"][None], a["camera"][None], b["image"][None],
                               b["camera"][None], torch.zeros_like(a["mask"][None]))
    assert empty == {"score": 0.0, "chance": 0.0, "gap": 0.0, "pixels": 0.0}


def test_the_normalised_loss_is_not_lowered_by_flattening_the_render(views):
    # the training loss: the plain colour error falls when the render's contrast falls; its ratio to chance
    # does not, and it still tells one scene's views (near 0) from different scenes' (near 1)
    def both(img_a, img_b, a, b, seed=0):
        args = (img_a[None], a["depth"][None], a["camera"][None], img_b[None], b["camera"][None], a["mask"][None])
        gen = torch.Generator().manual_seed(seed)
        return float(reprojection_error(*args)), float(normalized_reprojection_error(*args, generator=gen))

    for k in range(4):
        a, b, other = views[2 * k], views[2 * k + 1], views[(2 * k + 3) % 8]
        plain, ratio = both(a["image"], b["image"], a, b)
        flat_plain, flat_ratio = both(0.1 * a["image"], 0.1 * b["image"], a, b)
        _, other_ratio = both(a["image"], other["image"], a, other)
        assert flat_plain < 0.2 * plain and flat_ratio == pytest.approx(ratio, rel=1e-3), (plain, flat_plain)
        assert ratio < 0.35 and other_ratio > 0.6, (ratio, other_ratio)
    # differentiable, towards agreement
    a, b = views[0], views[1]
    img = b["image"][None].clone().requires_grad_(True)
    normalized_reprojection_error(a["image"][None], a["depth"][None], a["camera"][None], img, b["camera"][None],
                                  generator=torch.Generator().manual_seed(0)).backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_an_untrained_generator_scores_high_but_with_no_gap():
    from models.gan.aetherist.pipeline import AetheristPipeline

    rec, _ = fit("tiny", steps=0)
    pipe = AetheristPipeline(rec.generator.eval(), rec.config, torch.device("cpu"), torch.float32)
    r = pipe.consistency_report(3, seed=0, min_opacity=0.05)
    assert r["score"] > 90 and abs(r["gap"]) < 2 and r["contrast"] < 0.1 and r["latents_scored"] == 3, r
    assert r["score"] == pytest.approx(pipe.consistency(3, seed=0, min_opacity=0.05))
    assert 0 <= r["shuffled"] <= 100 and pipe.consistency_report(1, seed=0, min_opacity=0.05)["shuffled"] != \
        pipe.consistency_report(1, seed=0, min_opacity=0.05)["shuffled"]  # NaN with a single latent


def test_a_camera_folder_in_eg3d_format(tmp_path):
    img = Image.new("RGB", (20, 20), (200, 10, 10))
    img.save(tmp_path / "a.png")
    label = PrimitivesDataset(num_scenes=1, resolution=8)[0]["camera"].tolist()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["a.png", label]]}))
    ds = CameraFolderDataset(tmp_path, 16)
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and torch.allclose(item["camera"], torch.tensor(label))
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": [["missing.png", label]]}))
    with pytest.raises(UserError, match="missing.png"):
        CameraFolderDataset(tmp_path, 16)
    with pytest.raises(UserError, match="dataset.json"):
        CameraFolderDataset(tmp_path / "nowhere", 16)


def test_the_seed_yaml_keys(tmp_path):
    path = tmp_path / "aetherist_base.yaml"
    path.write_text("model:\n  latent_dim: 48\n  vit_dim: 64\n  vit_layers: 3\n  triplane_resolution: 32\n"
                    "  triplane_channels: 16\ntraining:\n  batch_size: 8\n  learning_rate_g: 2e-4\n"
                    "  learning_rate_d: 1e-4\n  lambda_perceptual: 0.1\n  lambda_consistency: 0.05\n")
    config, settings = settings_from_yaml(path)
    assert (config.latent_dim, config.vit_dim, config.vit_layers, config.triplane_resolution,
            config.triplane_channels) == (48, 64, 3, 32, 16)
    assert settings.batch_size == 8 and settings.learning_rate_d == 1e-4 and settings.lambda_consistency == 0.05
    path.write_text("training:\n  lambda_perceptul: 0.1\n")
    with pytest.raises(UserError, match="lambda_perceptual"):
        settings_from_yaml(path)


def test_one_training_step_updates_both_networks_with_every_loss(views):
    fresh, _ = fit("tiny", steps=0, batch_size=2, dataset=views)  # the same initial weights (seeded)
    trained, logs = fit("tiny", steps=1, batch_size=2, dataset=views)
    assert set(logs[0]) == {"loss_d", "loss_gan", "loss_perceptual", "loss_consistency", "loss_density", "loss_g"}
    assert all(torch.isfinite(torch.tensor(v)) for v in logs[0].values())
    for net in ("generator", "discriminator"):
        pairs = zip(getattr(fresh, net).parameters(), getattr(trained, net).parameters())
        assert any(not torch.equal(a, b) for a, b in pairs), net
    assert trained.lr_g == trained.lr_d == 2e-4 and trained.config == PRESETS["tiny"]
    assert recipe("tiny", lambda_consistency=0.0).train_step is not None


@pytest.mark.slow
def test_the_tiny_preset_lowers_its_discriminator_loss_offline():
    _, logs = fit("tiny", steps=8, batch_size=2, seed=0)
    first = sum(l["loss_d"] for l in logs[:3]) / 3
    last = sum(l["loss_d"] for l in logs[-3:]) / 3
    assert last < first, [round(l["loss_d"], 4) for l in logs]


@pytest.mark.slow
def test_ada_moves_p_with_the_discriminator_signs(views):
    # a target of -1: E[sign(D(real))] is always above it, so p rises at every adjustment (each 4 steps)
    rec, logs = fit("tiny", steps=4, batch_size=2, dataset=views, augment="ada", ada_target=-1.0)
    assert logs[0]["ada_p"] == 0.0 and logs[-1]["ada_p"] > 0
    assert float(rec.discriminator.augment.p) == logs[-1]["ada_p"]
