"""The SVD pipeline: whole-pipeline parity with diffusers' StableVideoDiffusionPipeline on tiny random components
(same image, same seed), the facade and its seeds, frame interpolation, saving, and one-line errors."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from models.video_generation.svd.config import SVDUNetConfig
from models.video_generation.svd.convert_unet import unet_config_to_diffusers, unet_native_to_diffusers
from models.video_generation.svd.model import SVDUNet
from models.video_generation.svd.pipeline import SVDPipeline
from utils.errors import UserError


def _image(h: int = 32, w: int = 32, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(arr)


@pytest.fixture(scope="module")
def tiny() -> SVDPipeline:
    return SVDPipeline.from_pretrained(preset="tiny", device="cpu")


def _perturbed(module: torch.nn.Module, seed: int) -> None:
    """Every tensor moved off its init (zero-initialised output layers included), so nothing is trivially equal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))


@pytest.mark.slow  # builds and runs diffusers' whole pipeline next to ours
def test_whole_pipeline_parity_with_diffusers():
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor

    from utils.encoders import temporal_vae_convert as tvc

    base = SVDPipeline.tiny()
    cfg = SVDUNetConfig.preset("tiny").with_(resnet_eps="diffusers")  # diffusers' GroupNorm eps, to compare
    unet = SVDUNet(cfg).eval()
    unet.load_state_dict(base.unet.state_dict())
    _perturbed(unet, 1)
    _perturbed(base.vae, 2)
    ours = SVDPipeline(unet, base.vae, base.image_encoder, preset="tiny")

    ref_unet = UNetSpatioTemporalConditionModel(**unet_config_to_diffusers(cfg)).eval()
    ref_unet.load_state_dict(unet_native_to_diffusers(unet.state_dict(), cfg))
    ref_vae = AutoencoderKLTemporalDecoder(**tvc.config_to_diffusers(base.vae.config)).eval()
    ref_vae.load_state_dict(tvc.native_to_diffusers(base.vae.state_dict()))
    ref = StableVideoDiffusionPipeline(vae=ref_vae, image_encoder=base.image_encoder.model, unet=ref_unet,
                                       scheduler=EulerDiscreteScheduler.from_config(ours.scheduler_config),
                                       feature_extractor=CLIPImageProcessor())
    ref.set_progress_bar_config(disable=True)

    image = _image()
    kw = dict(height=32, width=32, num_frames=4, fps=7, motion_bucket_id=100, noise_aug_strength=0.05,
              decode_chunk_size=2, min_guidance=1.0, max_guidance=2.5)
    expected = ref(image, num_inference_steps=3, generator=torch.Generator().manual_seed(7), output_type="pt",
                   **{k: v for k, v in kw.items() if k not in ("min_guidance", "max_guidance")},
                   min_guidance_scale=kw["min_guidance"], max_guidance_scale=kw["max_guidance"]).frames
    got = ours(image=image, steps=3, generator=torch.Generator().manual_seed(7), progress=False, **kw).pixels
    assert got.shape == expected.shape == (1, 4, 3, 32, 32)
    assert (got - expected.float()).abs().max() <= 1e-3
    assert (expected[:, 1:] - expected[:, :1]).abs().max() > 1e-3  # frames that differ: a real comparison


def test_same_seed_same_frames_and_the_facade(tmp_path):
    from models import generate

    image = _image()
    a = generate("video", "svd", image=image, seed=0, preset="tiny", progress=False)
    b = generate("video", "svd", image=image, seed=0, preset="tiny", progress=False)
    c = generate("video", "svd", image=image, seed=1, preset="tiny", progress=False)
    assert torch.equal(a.pixels, b.pixels) and not torch.equal(a.pixels, c.pixels)
    assert len(a.frames[0]) == 4 and a.fps == 7
    written = a.save(tmp_path / "clip.mp4")
    from utils.data.video import probe_video

    info = probe_video(written[0])
    assert info["frames"] == 4 and abs(info["fps"] - 7) < 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary file left


def test_frame_interpolation_inserts_frames_and_keeps_the_ends(tiny):
    image = _image()
    plain = tiny(image=image, seed=3, progress=False, output_type="latent")
    smooth = tiny(image=image, seed=3, progress=False, output_type="latent", interpolate=2)
    assert smooth.latents.shape[1] == (plain.latents.shape[1] - 1) * 3 + 1
    assert smooth.fps == plain.fps * 3
    assert torch.allclose(smooth.latents[:, ::3], plain.latents, atol=1e-5)  # the key frames are kept


def test_user_mistakes_are_one_line_errors(tiny, tmp_path):
    for kwargs, fragment in ((dict(num_frames=0), "num_frames"), (dict(height=30), "multiple"),
                             (dict(image=str(tmp_path / "none.png")), "not found"), (dict(image=None), "give an image"),
                             (dict(motion_bucket_id=-1), "motion_bucket_id")):
        args = {"image": _image(), "progress": False, **kwargs}
        with pytest.raises(UserError, match=fragment):
            tiny(**args)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="cannot read"):
        tiny(image=str(tmp_path / "bad.png"), progress=False)


def test_text_to_video_makes_the_first_frame_with_an_image_model_of_the_zoo(tiny):
    from models import load

    video = tiny(prompt="a red fox", seed=4, progress=False)
    image = load("image", "sdxl", preset="tiny", device="cpu")(prompt="a red fox", height=32, width=32, seed=4,
                                                                progress=False).images
    direct = tiny(image=image, seed=4, progress=False)
    assert torch.equal(video.pixels, direct.pixels)  # the same as animating SDXL's image by hand
    assert video.pixels.shape == (1, 4, 3, 32, 32)
    with pytest.raises(UserError, match="image_model"):
        tiny(prompt="a red fox", image_model="dalle", progress=False)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    from tests.helpers.bad_files import make_bad_files

    folder = tmp_path_factory.mktemp("bad_files")
    return folder, make_bad_files(folder)


@pytest.mark.parametrize("kind", ["missing", "empty", "truncated_safetensors", "random_bytes", "wrong_model", "evil_pkl",
                                  "evil_pt", "evil_ckpt", "evil_bin", "hub_id"])
def test_bad_weights_through_the_facade_are_user_errors(kind, bad_files):
    from models import generate
    from tests.helpers.bad_files import PWNED

    folder, bad = bad_files
    with pytest.raises(UserError):
        generate("video", "svd", weights=str(bad[kind]), image=_image(), progress=False)
    assert not (folder / PWNED).exists()  # a malicious pickle's payload never ran
