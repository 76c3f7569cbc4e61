"""ControlNet in the SD 1.5 and SDXL pipelines: whole-pipeline parity with diffusers' StableDiffusionControlNetPipeline
and StableDiffusionXLControlNetPipeline on tiny random components, the CLI (`--control canny --control-image`) on
tiny checkpoints in the official layout, and its bad inputs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from models.image_generation.stable_diffusion.controlnet import ControlNet, ControlNetConfig
from models.image_generation.stable_diffusion.controlnet_convert import controlnet_config_to_diffusers
from models.image_generation.stable_diffusion.convert import SDXL_SCHEDULER
from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers
from models.image_generation.stable_diffusion.pipeline_sd15 import SD15_SCHEDULER, SD15Pipeline
from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline
from models.image_generation.stable_diffusion.unet import UNetConfig
from utils.encoders.clip import CLIPTextEncoderConfig
from utils.encoders.vae import VAEConfig
from utils.errors import UserError
from utils.preprocess.control import control_image
from tests.helpers.tokenizers import write_clip_tokenizer

ROOT = Path(__file__).resolve().parents[3]
PROMPT = "a watercolor painting of a red fox"
HINT_WIDTHS = (8, 16)  # the tiny VAE halves the size once: so does the tiny ControlNet's image embedding


def _perturb(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.03 * torch.randn(p.shape, generator=g))  # zero convolutions included
    return module.eval()


def _photo(path: Path, size: int = 32) -> Path:
    """A photo-like test image: a bright square and a disc on a gradient."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.stack([xx * 4, yy * 4, np.full_like(xx, 60)], -1).astype(np.float32)
    img[8:20, 6:18] = 230
    img[((yy - 22) ** 2 + (xx - 22) ** 2) < 25] = (20, 200, 40)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
    return path


def _reference(tmp: Path, family: str):
    """(diffusers ControlNet pipeline, its saved folder) on tiny random components."""
    import diffusers
    from diffusers import AutoencoderKL, ControlNetModel, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    preset = "tiny-sd15" if family == "sd15" else "tiny"
    ucfg = UNetConfig.preset(preset)
    torch.manual_seed(0)
    unet = _perturb(UNet2DConditionModel(**unet_config_to_diffusers(ucfg)), 1)
    cn_cfg = ControlNetConfig(ucfg, hint_block_channels=HINT_WIDTHS)
    cn = _perturb(ControlNetModel(**controlnet_config_to_diffusers(cn_cfg)), 2)
    vae = AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny"))).eval()
    sched = SD15_SCHEDULER if family == "sd15" else SDXL_SCHEDULER
    scheduler = EulerDiscreteScheduler.from_config({k: v for k, v in sched.items() if k != "_class_name"})
    write_clip_tokenizer(tmp / "tok1")
    enc1 = transformers.CLIPTextModel(CLIPTextEncoderConfig.preset("tiny").to_transformers()).eval()
    parts = dict(unet=unet, controlnet=cn, vae=vae, text_encoder=enc1,
                 tokenizer=CLIPTokenizer.from_pretrained(tmp / "tok1"), scheduler=scheduler)
    if family == "sd15":
        ref = diffusers.StableDiffusionControlNetPipeline(**parts, safety_checker=None, feature_extractor=None,
                                                          requires_safety_checker=False)
    else:
        write_clip_tokenizer(tmp / "tok2", pad_token="!")
        enc2 = transformers.CLIPTextModelWithProjection(CLIPTextEncoderConfig.preset("tiny-bigg").to_transformers())
        ref = diffusers.StableDiffusionXLControlNetPipeline(**parts, text_encoder_2=enc2.eval(),
                                                            tokenizer_2=CLIPTokenizer.from_pretrained(tmp / "tok2"))
    ref.set_progress_bar_config(disable=True)
    ref.save_pretrained(tmp / family)
    return ref, tmp / family


PIPELINES = {"sd15": SD15Pipeline, "sdxl": SDXLPipeline}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_controlnet_pipeline_parity_with_diffusers(family, tmp_path):
    """Our pipeline makes the Canny control image from the photo; diffusers gets that control image. Same
    seed, 3 steps, classifier-free guidance (the ControlNet on both branches), conditioning scale 0.8."""
    ref, folder = _reference(tmp_path, family)
    photo = _photo(tmp_path / "photo.png")
    hint = control_image("canny", photo, (32, 32))
    ours = PIPELINES[family].from_pretrained(folder, device="cpu", controlnet=folder / "controlnet")
    kw = dict(height=32, width=32)
    expected = ref(PROMPT, image=hint, num_inference_steps=3, guidance_scale=6.0, controlnet_conditioning_scale=0.8,
                   generator=torch.Generator().manual_seed(5), output_type="np", **kw).images
    got = ours(PROMPT, control="canny", control_image=photo, control_scale=0.8, steps=3, guidance=6.0, seed=5,
               progress=False, **kw)
    got = got.pixels.permute(0, 2, 3, 1).numpy()
    plain = ours(PROMPT, steps=3, guidance=6.0, seed=5, progress=False, **kw).pixels.permute(0, 2, 3, 1).numpy()
    assert expected.std() > 1e-3
    assert abs(expected - got).max() <= 1e-3
    assert abs(plain - got).max() > 1e-2  # the control changed the image


def _official_file(tmp: Path, ucfg: UNetConfig, seed: int) -> Path:
    """A tiny ControlNet in lllyasviel's layout (`control_model.*`, .pth as ControlNet 1.1 ships)."""
    torch.manual_seed(seed)
    net = _perturb(ControlNet(ControlNetConfig(ucfg, hint_block_channels=HINT_WIDTHS)), seed)
    path = tmp / f"control_tiny_{seed}.pth"
    torch.save({f"control_model.{k}": v for k, v in net.state_dict().items()}, path)
    return path


def _cli():
    spec = importlib.util.spec_from_file_location("_generate_image_cn", ROOT / "inference" / "generate_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_cli_control_canny_on_a_tiny_checkpoint(family, tmp_path, capsys):
    """`generate_image.py --model sdxl --control canny --control-image IMG --controlnet FILE`: the image written is
    the one the Python call makes with the same ControlNet, and differs from the uncontrolled one."""
    cli = _cli()
    photo = _photo(tmp_path / "photo.png")
    ucfg = UNetConfig.preset("tiny-sd15" if family == "sd15" else "tiny")
    cn_file = _official_file(tmp_path, ucfg, 3)
    common = ["--model", family, "--preset", "tiny", "--prompt", "a fox", "--steps", "2", "--height", "32",
              "--width", "32", "--seed", "4"]
    cli.main([*common, "--control", "canny", "--control-image", str(photo), "--controlnet", str(cn_file),
              "--control-scale", "0.9", "--out", str(tmp_path / "c.png")])
    cli.main([*common, "--out", str(tmp_path / "plain.png")])
    assert "wrote 1 image(s)" in capsys.readouterr().out
    pipe = PIPELINES[family].from_pretrained(preset="tiny", device="cpu", controlnet=cn_file)
    expect = pipe("a fox", control="canny", control_image=photo, control_scale=0.9, steps=2, height=32, width=32,
                  seed=4, progress=False).images[0]
    written = np.asarray(Image.open(tmp_path / "c.png"), dtype=np.int16)
    assert np.abs(written - np.asarray(expect, dtype=np.int16)).max() <= 1
    assert np.abs(written - np.asarray(Image.open(tmp_path / "plain.png"), dtype=np.int16)).max() > 2


def test_tiny_preset_runs_every_control_kind_without_files(tmp_path):
    pipe = SD15Pipeline.from_pretrained(preset="tiny", device="cpu")
    photo = _photo(tmp_path / "photo.png")
    grey = tmp_path / "depth.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))).convert("RGB").save(grey)
    pose = np.zeros((32, 32, 3), np.uint8)
    pose[4:28, 15:17] = (255, 0, 0)
    Image.fromarray(pose).save(tmp_path / "pose.png")
    outs = {}
    for kind, img in (("canny", photo), ("depth", grey), ("pose", tmp_path / "pose.png")):
        pipe.control_kind = None  # the tiny ControlNet serves every kind
        outs[kind] = pipe("x", control=kind, control_image=img, steps=2, height=32, width=32, seed=0,
                          progress=False).pixels
    assert (outs["canny"] - outs["depth"]).abs().max() > 1e-3 and (outs["depth"] - outs["pose"]).abs().max() > 1e-3


def _run_cli_error(argv, capsys) -> str:
    cli = _cli()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_cli_bad_control_inputs(tmp_path, capsys):
    photo = _photo(tmp_path / "photo.png")
    out = tmp_path / "never.png"
    base = ["--preset", "tiny", "--steps", "1", "--height", "32", "--width", "32", "--out", str(out)]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    xl_cn = _official_file(tmp_path, UNetConfig.preset("tiny"), 6)
    cases = [
        (["--model", "sdxl", "--control", "canny"], "needs --control-image"),
        (["--model", "sdxl", "--control-image", str(photo)], "needs --control KIND"),
        (["--model", "sdxl", "--control", "edges", "--control-image", str(photo)], "--control names the kind"),
        (["--model", "sd15", "--control", "canny", "--control-image", str(tmp_path / "nope.png")], "not found"),
        (["--model", "sd15", "--control", "canny", "--control-image", str(tmp_path / "broken.png")], "broken.png"),
        (["--model", "sd15", "--control", "pose", "--control-image", str(photo)], "looks like a photo"),
        (["--model", "sd15", "--control", "depth", "--control-image", str(photo)], "no depth estimator"),
        (["--model", "sd15", "--control", "canny", "--control-image", str(photo), "--controlnet", str(xl_cn)],
         "another UNet"),
        (["--model", "sd15", "--control", "canny", "--control-image", str(photo), "--control-scale", "-1"],
         "control_scale"),
        (["--model", "dcgan", "--controlnet", str(xl_cn)], "does not take --controlnet"),
    ]
    for argv, fragment in cases:
        line = _run_cli_error([*argv, *base], capsys)
        assert fragment in line, (argv, line)
        assert not out.exists()


def test_python_call_errors():
    pipe = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
    with pytest.raises(UserError, match="ControlNet"):
        pipe("x", control="edges.png")
    with pytest.raises(UserError, match="needs its kind"):
        pipe("x", control_image=torch.zeros(1, 3, 32, 32))
    pipe.load_controlnet(ControlNet(ControlNetConfig(UNetConfig.preset("tiny"))), kind="depth")
    with pytest.raises(UserError, match="is for depth, not canny"):
        pipe("x", control="canny", control_image=torch.zeros(1, 3, 32, 32), height=32, width=32)
    pipe.control_kind = None
    with pytest.raises(UserError, match="1/8 size"):  # a ControlNet for 8x VAEs on the 2x tiny VAE
        pipe("x", control="canny", control_image=torch.zeros(1, 3, 32, 32), height=32, width=32)
    with pytest.raises(UserError, match="another UNet"):
        pipe.load_controlnet(ControlNet(ControlNetConfig(UNetConfig.preset("tiny-sd15"))))


def test_default_release_offline_is_one_clear_line():
    """A real preset without a loaded ControlNet fetches the kind's release; offline that fails with what to do."""
    from utils.errors import WeightsError

    pipe = SD15Pipeline.from_pretrained(preset="tiny", device="cpu")
    pipe.preset = "sd15"  # as a real SD 1.5 pipeline: the default is lllyasviel/control_v11p_sd15_canny
    with pytest.raises((UserError, WeightsError), match="control_v11p_sd15_canny.*--controlnet PATH"):
        pipe("x", control="canny", control_image=torch.zeros(1, 3, 32, 32), height=32, width=32)
    with pytest.raises(UserError, match="no default pose ControlNet for sdxl"):
        xl = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
        xl.preset = "sdxl-base"
        xl("x", control="pose", control_image=torch.zeros(1, 3, 32, 32), height=32, width=32)


def test_control_in_img2img_and_inpainting():
    """The ControlNet steers img2img (SD 1.5) and inpainting (SDXL) as well; the unmasked area stays the image's."""
    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(32, 32)
    mask[8:24, 8:24] = 1
    xl = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
    kw = dict(steps=3, seed=0, progress=False)
    a = xl("x", image=img, mask=mask, control="canny", control_image=img, **kw).pixels
    b = xl("x", image=img, mask=mask, **kw).pixels
    assert (a - b)[..., 8:24, 8:24].abs().max() > 1e-2
    sd = SD15Pipeline.from_pretrained(preset="tiny", device="cpu")
    a = sd("x", image=img, strength=0.6, control="canny", control_image=img, **kw).pixels
    b = sd("x", image=img, strength=0.6, **kw).pixels
    assert (a - b).abs().max() > 1e-2


def test_model_offload_places_the_controlnet_too():
    """from_pretrained(controlnet=...) loads it before offload is set up: hooked like the others, same image."""
    from models.image_generation.stable_diffusion.controlnet_pipeline import tiny_controlnet

    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    net = tiny_controlnet(UNetConfig.preset("tiny"), 2)
    off = SDXLPipeline.from_pretrained(preset="tiny", device="cpu", offload="model", controlnet=net)
    assert "controlnet" in dict(off.named_components())
    a = off("x", control="canny", control_image=img, steps=2, seed=0, progress=False).pixels
    b = SDXLPipeline.from_pretrained(preset="tiny", device="cpu", controlnet=net)(
        "x", control="canny", control_image=img, steps=2, seed=0, progress=False).pixels
    assert torch.equal(a, b)
    with pytest.raises(UserError, match="CPU offload"):
        off.load_controlnet(net)
