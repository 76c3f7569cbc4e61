"""The CLIs with --model aetherist: generate_image.py camera flags, generate_3d.py turntables and meshes,
train_gan.py on the built-in multi-view set (its exported generator loads back)."""
import pytest
import torch
from PIL import Image

from inference.generate_3d import main as generate_3d
from inference.generate_image import main as generate_image
from models.gan.aetherist.pipeline import AetheristPipeline
from utils.rendering.camera_labels import camera_label, create_camera_pose


def test_generate_image_with_a_camera(tmp_path):
    generate_image(["--model", "aetherist", "--preset", "tiny", "--seed", "0", "--elevation", "30", "--azimuth", "45",
                    "--radius", "2.0", "--num-images", "1", "--out", str(tmp_path / "view.png")])
    img = Image.open(tmp_path / "view.png")
    assert img.size == (64, 64)
    # the same view through the Python API gives the same pixels
    pipe = AetheristPipeline.from_pretrained(preset="tiny", device="cpu")
    pose = create_camera_pose(30, 45, 2.0, target=pipe.config.avg_camera_pivot)
    out = pipe(num_images=1, seed=0, camera_poses=camera_label(pose, pipe.intrinsics()))
    assert out.images[0].tobytes() == img.convert("RGB").tobytes()


def test_a_camera_flag_on_a_model_without_cameras_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        generate_image(["--model", "dcgan", "--preset", "tiny", "--azimuth", "45", "--out", str(tmp_path / "x.png")])
    assert err.value.code == 2 and "--azimuth" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_generate_3d_turntable_and_mesh(tmp_path, capsys):
    assert generate_3d(["--model", "aetherist", "--preset", "tiny", "--turntable", "--frames", "3", "--mesh",
                        "--mesh-resolution", "12", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "turntable.mp4").stat().st_size > 0
    header = (tmp_path / "mesh.ply").read_bytes()[:200]
    assert header.startswith(b"ply") and b"element face" in header
    with pytest.raises(SystemExit) as err:
        generate_3d(["--model", "aetherist", "--preset", "tiny", "--frames", "0", "--turntable",
                     "--out", str(tmp_path / "bad")])
    assert err.value.code == 2 and not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_train_gan_trains_the_tiny_preset_offline(tmp_path):
    from train.train_gan import main as train_gan

    config = tmp_path / "aetherist.yaml"
    config.write_text("model:\n  latent_dim: 24\n  vit_layers: 1\ntraining:\n  learning_rate_g: 1.0e-4\n")
    train_gan(["--model", "aetherist", "--preset", "tiny", "--data", "primitives", "--steps", "2", "--batch", "2",
               "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress", "--cpu", "--sample-every",
               "2", "--ckpt-every", "2"])
    import json

    assert json.loads((tmp_path / "run" / "settings.json").read_text())["lr_g"] == 1e-4
    pipe = AetheristPipeline.from_pretrained(tmp_path / "run" / "generator.safetensors", device="cpu")
    assert pipe.config.latent_dim == 24 and pipe.config.vit_layers == 1
    assert pipe(num_images=1, seed=0).pixels.shape == (1, 3, 64, 64)
    assert torch.isfinite(pipe(num_images=1, seed=0).pixels).all()


def test_evaluate_consistency_3d(capsys):
    import json

    from evaluate.consistency_3d import main as consistency

    result = consistency(["--model", "aetherist", "--preset", "tiny", "--num-samples", "2", "--min-opacity", "0.05",
                          "--json"])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result and 0 <= result["consistency_3d"] <= 100
    # with its chance level and the gap: an untrained generator's high score is explained by its blankness
    assert result["gap"] == pytest.approx(result["consistency_3d"] - result["chance"]) and abs(result["gap"]) < 2
    assert 0 <= result["shuffled_latents"] <= 100 and result["contrast"] >= 0
    # a stricter tolerance can only lower the score
    strict = consistency(["--model", "aetherist", "--preset", "tiny", "--num-samples", "2", "--min-opacity", "0.05",
                          "--tolerance", "0.001", "--json"])
    assert strict["consistency_3d"] < result["consistency_3d"]
    with pytest.raises(SystemExit) as err:
        consistency(["--model", "dcgan", "--preset", "tiny", "--num-samples", "1"])
    assert err.value.code == 2 and "renders no depth" in capsys.readouterr().err
