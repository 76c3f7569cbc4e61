"""StyleGAN's command lines as a user types them: generate_image.py with the StyleGAN flags, the facade,
`python -m models.gan.stylegan3.project` and `python -m models.gan.stylegan3.edit` (ganspace, interfacegan,
apply, mix, video), offline with tiny presets; mistakes are one line and exit 2."""
from __future__ import annotations

import pytest
import torch
from PIL import Image


def _one_line(capsys, exc, *fragments):
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_generate_image_without_the_release_file_is_one_line(tmp_path, monkeypatch, capsys):
    from inference.generate_image import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache: the .pkl is not there
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exc:
        main(["--model", "stylegan3", "--preset", "stylegan3-t-ffhq-1024", "--seed", "0", "--truncation", "0.7",
              "--out", str(tmp_path / "face.png")])
    _one_line(capsys, exc, "stylegan3-t-ffhq-1024x1024.pkl", "offline", "--weights")
    assert not (tmp_path / "face.png").exists()


def test_generate_image_with_the_stylegan_flags(tmp_path, capsys):
    from inference.generate_image import main

    def run(name: str, *extra: str) -> torch.Tensor:
        main(["--model", "stylegan3", "--preset", "tiny", "--seed", "0", "--num-images", "1", "--truncation", "0.7",
              "--out", str(tmp_path / name), *extra])
        return torch.tensor(list(Image.open(tmp_path / name).convert("RGB").getdata()), dtype=torch.float32)

    base = run("base.png")
    assert torch.equal(run("again.png"), base)
    assert not torch.equal(run("moved.png", "--translate", "0.25,0", "--rotate", "30"), base)
    with pytest.raises(SystemExit) as exc:
        main(["--model", "stylegan3", "--preset", "tiny-stylegan2", "--rotate", "10", "--out", str(tmp_path / "r.png")])
    _one_line(capsys, exc, "cannot be rotated")


def test_the_facade_generates_and_checks(tmp_path):
    import models
    from utils.errors import UserError

    out = models.generate("gan", "stylegan3", preset="tiny", seed=0, num_images=2, truncation=0.7, rotate=15)
    assert out.pixels.shape == (2, 3, 32, 32)
    assert torch.equal(out.pixels, models.generate("gan", "stylegan3", preset="tiny", seed=0, num_images=2,
                                                   truncation=0.7, rotate=15).pixels)
    with pytest.raises(UserError, match="truncation"):
        models.generate("gan", "stylegan3", preset="tiny", truncation=3)


def test_edit_mix_and_video(tmp_path, capsys):
    import imageio.v3 as iio

    from models.gan.stylegan3.edit import main

    assert main(["mix", "--preset", "tiny", "--device", "cpu", "--rows", "1,2", "--cols", "3,4,5", "--styles", "0-3",
                 "--out", str(tmp_path / "mix.png")]) == 0
    assert Image.open(tmp_path / "mix.png").size == (4 * 32, 3 * 32)  # a header row and column of seeds
    assert main(["video", "--preset", "tiny", "--device", "cpu", "--seeds", "0,1", "--frames-per-seed", "3",
                 "--space", "z", "--out", str(tmp_path / "walk.mp4")]) == 0
    frames = iio.imread(tmp_path / "walk.mp4", plugin="pyav") if _has_pyav() else iio.imread(tmp_path / "walk.mp4")
    assert len(frames) == 6 and frames.shape[1:3] == (32, 32)  # 2 seeds x 3 frames, looping back
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["video", "--preset", "tiny", "--seeds", "0,1", "--out", str(tmp_path / "walk.avi")])
    _one_line(capsys, exc, "a video is written as")
    assert not (tmp_path / "walk.avi").exists()
    with pytest.raises(SystemExit) as exc:
        main(["mix", "--preset", "tiny", "--rows", "1", "--cols", "x", "--out", str(tmp_path / "m.png")])
    _one_line(capsys, exc, "comma-separated integers")


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def test_edit_ganspace_interfacegan_and_apply(tmp_path, capsys):
    from models.gan.latents import save_latents
    from models.gan.stylegan3.edit import main
    from models.gan.stylegan3.editing import Directions

    pca = tmp_path / "pca.safetensors"
    assert main(["ganspace", "--preset", "tiny", "--device", "cpu", "--components", "3", "--samples", "200",
                 "--out", str(pca)]) == 0
    assert Directions.load(pca).names == ("pc0", "pc1", "pc2")
    assert main(["apply", "--preset", "tiny", "--device", "cpu", "--directions", str(pca), "--name", "pc1",
                 "--strengths=-2,0,2", "--layers", "0-3", "--out", str(tmp_path / "pc1.png")]) == 0
    assert Image.open(tmp_path / "pc1.png").size[0] >= 3 * 32
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(40, 32, generator=gen)
    save_latents(tmp_path / "w.safetensors", w)
    (tmp_path / "labels.txt").write_text("\n".join(str(int(v > 0)) for v in w[:, 0]))
    assert main(["interfacegan", "--latents", str(tmp_path / "w.safetensors"), "--labels", str(tmp_path / "labels.txt"),
                 "--name", "first", "--out", str(tmp_path / "first.safetensors")]) == 0
    assert Directions.load(tmp_path / "first.safetensors").vectors[0].argmax() == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["apply", "--preset", "tiny", "--directions", str(pca), "--name", "smile", "--out", str(tmp_path / "x.png")])
    _one_line(capsys, exc, "no direction 'smile'", "pc0")


@pytest.mark.slow
def test_project_command_line_writes_the_projection(tmp_path, capsys):
    from models.gan.stylegan3.pipeline import StyleGANPipeline
    from models.gan.stylegan3.project import main
    from utils.metrics.lpips import LPIPS

    torch.manual_seed(0)  # a random VGG16 backbone in torchvision's layout stands in for the ImageNet one
    backbone = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in LPIPS("vgg").features.state_dict().items()}, backbone)
    pipe = StyleGANPipeline.from_pretrained(preset="tiny-stylegan2", device="cpu")
    pipe(seed=4, num_images=1).save(tmp_path / "photo.png")
    assert main(["--target", str(tmp_path / "photo.png"), "--preset", "tiny-stylegan2", "--steps", "4", "--device",
                 "cpu", "--lpips-backbone", str(backbone), "--video", "--quiet", "--out", str(tmp_path / "proj")]) == 0
    out = capsys.readouterr().out
    assert "LPIPS" in out
    names = {p.name for p in (tmp_path / "proj").iterdir()}
    assert names == {"target.png", "proj.png", "projected_w.safetensors", "proj.mp4"}
    from models.gan.latents import load_latents

    ws = load_latents(tmp_path / "proj" / "projected_w.safetensors")[0]
    assert ws.shape == (1, pipe.num_ws, 32)


def test_project_command_line_mistakes_are_one_line(tmp_path, capsys):
    from models.gan.stylegan3.project import main

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    for argv, fragment in ((["--target", str(tmp_path / "none.png"), "--preset", "tiny"], "--target image not found"),
                           (["--target", str(tmp_path / "photo.png"), "--steps", "0"], "--steps")):
        with pytest.raises(SystemExit) as exc:
            main([*argv, "--out", str(tmp_path / "bad")])
        _one_line(capsys, exc, fragment)
        assert not (tmp_path / "bad").exists()
