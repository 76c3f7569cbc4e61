"""The Sora stand-in's pipeline (Wan 2.1): whole-generation parity with diffusers' WanPipeline and
WanImageToVideoPipeline on the same tiny random components (CFG, per-video seeds, a few Euler steps),
loading a diffusers folder and the official release's folder from disk, seeds, prompt extension and the
user errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
from diffusers import WanPipeline as ReferenceT2V
from diffusers import WanTransformer3DModel
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPImageProcessor

from models.video_generation.sora.convert import official_to_diffusers
from models.video_generation.sora.pipeline import WanPipeline, check_frames, fit_size
from utils.encoders.t5 import T5TextEncoder, load_t5_tokenizer
from utils.encoders.umt5_convert import transformers_to_official
from utils.encoders.wan_vae_convert import native_to_diffusers, native_to_official
from utils.errors import UserError
from tests.helpers.tokenizers import write_t5_tokenizer


SHIFT = 3.0
CALL = dict(num_frames=5, height=32, width=32, guidance_scale=4.0)


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("umt5") / "tokenizer"
    return folder, write_t5_tokenizer(folder)


def _pipeline(tokenizer_folder, image_to_video: bool = False, seed: int = 0) -> WanPipeline:
    """The tiny pipeline with a real SentencePiece tokenizer (so diffusers can save and read it) and
    perturbed weights (the release zero-inits some projections)."""
    folder, info = tokenizer_folder
    pipe = WanPipeline.tiny(image_to_video=image_to_video)
    cfg = pipe.text_encoder.config.with_(vocab_size=info.vocab_size)
    pipe.text_encoder = T5TextEncoder(cfg, tokenizer=load_t5_tokenizer(folder))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.image_encoder):
            for p in (module.parameters() if module is not None else ()):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return pipe


def _reference(pipe: WanPipeline):
    tr = WanTransformer3DModel(**pipe.config.to_diffusers()).eval()
    tr.load_state_dict(official_to_diffusers(pipe.transformer.state_dict()))
    vae = AutoencoderKLWan(**pipe.vae.config.to_diffusers()).eval()
    vae.load_state_dict(native_to_diffusers(pipe.vae.state_dict()))
    parts = dict(tokenizer=pipe.text_encoder.tokenizer, text_encoder=pipe.text_encoder.model, vae=vae,
                 transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT))
    if pipe.i2v:
        side = pipe.image_encoder.config.image_size
        ref = WanImageToVideoPipeline(**parts, image_encoder=pipe.image_encoder.model,
                                      image_processor=CLIPImageProcessor(size={"shortest_edge": side},
                                                                         crop_size={"height": side, "width": side}))
    else:
        ref = ReferenceT2V(**parts)
    ref.set_progress_bar_config(disable=True)
    return ref


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_text_to_video_parity_with_diffusers(tokenizer_folder):
    pipe = _pipeline(tokenizer_folder)
    ref = _reference(pipe)
    prompts, negatives = ["a red square slides to the right", "rain over a lake"], ["blurry", ""]
    with torch.no_grad():
        want = ref(prompt=prompts, negative_prompt=negatives, num_inference_steps=3, generator=_generators(7, 8),
                   output_type="pt", max_sequence_length=16, **CALL).frames
    out = pipe(prompt=prompts, negative_prompt=negatives, steps=3, seed=7, shift=SHIFT, max_sequence_length=16,
               progress=False, **CALL)
    assert out.pixels.shape == want.shape == (2, 5, 3, 32, 32)
    assert (out.pixels - want).abs().max().item() <= 1e-3
    assert want.std() > 0.05  # real frames, not a constant
    assert len(out.frames) == 2 and len(out.frames[0]) == 5 and out.fps == 8
    # Guidance matters: scale 1 (one branch) gives other frames.
    plain = pipe(prompt=prompts[:1], steps=3, seed=7, shift=SHIFT, max_sequence_length=16, progress=False,
                 **{**CALL, "guidance_scale": 1.0})
    assert (plain.pixels[0] - out.pixels[0]).abs().max() > 1e-3


def test_image_to_video_parity_with_diffusers(tokenizer_folder):
    pipe = _pipeline(tokenizer_folder, image_to_video=True, seed=1)
    ref = _reference(pipe)
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8))
    # diffusers' Wan attention splits image from text tokens assuming 512 text tokens: give it 512.
    with torch.no_grad():
        want = ref(image=image, prompt="a cat walks", negative_prompt="blur", num_inference_steps=3,
                   generator=_generators(5), output_type="pt", max_sequence_length=512, **CALL).frames
    out = pipe(image=image, prompt="a cat walks", negative_prompt="blur", steps=3, seed=5, shift=SHIFT,
               max_sequence_length=512, progress=False, **CALL)
    assert (out.pixels - want).abs().max().item() <= 1e-3
    # The image conditions the clip: another image gives another clip.
    other = pipe(image=Image.fromarray(255 - np.asarray(image)), prompt="a cat walks", negative_prompt="blur",
                 steps=3, seed=5, shift=SHIFT, max_sequence_length=512, progress=False, **CALL)
    assert (other.pixels - out.pixels).abs().max() > 1e-3


def test_seeds_per_video_and_latents_output():
    pipe = WanPipeline.tiny()
    both = pipe(prompt="waves", num_videos=2, seed=11, output_type="latent", progress=False)
    second = pipe(prompt="waves", seed=12, output_type="latent", progress=False)
    assert both.latents.shape == (2, 4, 2, 8, 8)
    assert torch.allclose(both.latents[1], second.latents[0], atol=1e-5)
    assert not torch.allclose(both.latents[0], both.latents[1])


def test_load_diffusers_and_official_folders(tokenizer_folder, tmp_path):
    pipe = _pipeline(tokenizer_folder, seed=2)
    with torch.no_grad():
        want = pipe(prompt="a boat", steps=2, seed=3, shift=SHIFT, progress=False, **CALL).pixels
    # diffusers: what diffusers itself writes.
    _reference(pipe).save_pretrained(tmp_path / "diffusers")
    loaded = WanPipeline.from_pretrained(tmp_path / "diffusers", device="cpu", dtype="float32")
    got = loaded(prompt="a boat", steps=2, seed=3, shift=SHIFT, max_sequence_length=16, progress=False, **CALL).pixels
    assert (got - want).abs().max() <= 1e-5
    # The official release's folder: transformer safetensors + config.json, Wan2.1_VAE.pth, the UMT5 .pth
    # and its tokenizer under google/umt5-xxl/.
    off = tmp_path / "official"
    (off / "google").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in pipe.transformer.state_dict().items()},
              off / "diffusion_pytorch_model.safetensors")
    (off / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": pipe.config.dim,
                                                 "num_heads": pipe.config.num_heads, "model_type": "t2v"}))
    torch.save(native_to_official(pipe.vae.state_dict(), pipe.vae.config.num_res_blocks), off / "Wan2.1_VAE.pth")
    torch.save(transformers_to_official(pipe.text_encoder.model.state_dict()), off / "models_t5_umt5-xxl-enc-bf16.pth")
    pipe.text_encoder.tokenizer.save_pretrained(str(off / "google" / "umt5-xxl"))
    official = WanPipeline.from_pretrained(off, device="cpu", dtype="float32")
    got = official(prompt="a boat", steps=2, seed=3, shift=SHIFT, max_sequence_length=16, progress=False, **CALL).pixels
    assert (got - want).abs().max() <= 1e-5


def test_prompt_extension_rewrites_the_prompt():
    pipe = WanPipeline.tiny()
    seen = []

    def extender(prompt: str) -> str:
        seen.append(prompt)
        return prompt + ", golden hour, slow dolly-in"

    extended = pipe(prompt="a fox", prompt_extender=extender, seed=1, output_type="latent", progress=False)
    direct = pipe(prompt="a fox, golden hour, slow dolly-in", seed=1, output_type="latent", progress=False)
    plain = pipe(prompt="a fox", seed=1, output_type="latent", progress=False)
    assert seen == ["a fox"]
    assert torch.equal(extended.latents, direct.latents) and not torch.equal(extended.latents, plain.latents)
    with pytest.raises(UserError, match="no text model"):
        pipe(prompt="a fox", prompt_extender="/nonexistent/qwen", progress=False)


def test_sizes_and_user_errors():
    pipe = WanPipeline.tiny()
    check_frames(81)
    with pytest.raises(UserError, match=r"1 \+ 4k frames.*use 5 or 9"):
        pipe(prompt="x", num_frames=6, progress=False)
    with pytest.raises(UserError, match="multiples of 8"):  # tiny: VAE 4 x patch 2 (the releases: 16)
        pipe(prompt="x", height=36, progress=False)
    with pytest.raises(UserError, match="text-to-video and takes no image"):
        pipe(prompt="x", image=Image.new("RGB", (32, 32)), progress=False)
    with pytest.raises(UserError, match="needs a prompt"):
        pipe(progress=False)
    with pytest.raises(UserError, match="no preset 'wan3'"):
        WanPipeline.from_pretrained(preset="wan3")
    i2v = WanPipeline.tiny(image_to_video=True)
    with pytest.raises(UserError, match="image-to-video: give the first frame"):
        i2v(prompt="x", progress=False)
    # Variable aspect ratio: a 2:1 image gives a wide clip of about the preset's area, on the 16-pixel grid.
    assert fit_size((240, 480), 480 * 832) == (448, 896)
    wide = i2v(prompt="x", image=Image.new("RGB", (64, 32), "red"), steps=1, output_type="latent", progress=False)
    assert fit_size((32, 64), 32 * 32, 8) == (24, 48)
    assert wide.latents.shape[-2:] == (6, 12)  # 24 x 48 pixels: about 32 x 32's area at 1:2


def test_generate_video_cli(tmp_path, monkeypatch, capsys):
    """generate_video.py --model sora as a user runs it: an mp4 of the asked frames, and one-line errors."""
    import imageio_ffmpeg

    from inference.generate_video import main
    from utils.errors import cli_errors

    monkeypatch.chdir(tmp_path)
    assert main(["--model", "sora", "--preset", "tiny", "--prompt", "a fox in snow", "--num-frames", "9",
                 "--steps", "2", "--fps", "12", "--vae-tiling", "--no-progress", "--out", "fox.mp4"]) == 0
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "fox.mp4"))[0] == 9
    assert "9 frames at 12 fps" in capsys.readouterr().out
    for argv, message in [(["--prompt", "x", "--num-frames", "6"], "use 5 or 9"),
                          (["--prompt", "x", "--height", "30"], "not a multiple of 8"),
                          (["--num-frames", "5"], "give --prompt"),
                          (["--prompt", "x", "--prompt-extender", "nowhere"], "not a folder")]:
        before = set(tmp_path.iterdir())
        with pytest.raises(SystemExit) as exc, cli_errors("generate_video.py"):
            main(["--model", "sora", "--preset", "tiny", *argv, "--out", "bad.mp4"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
        assert set(tmp_path.iterdir()) == before


def test_memory_options_keep_the_video():
    """CPU offload (model and sequential, with the CPU as the execution device here) gives the same frames;
    VAE tiling decodes the same clip in spatial tiles."""
    call = dict(prompt="waves at dusk", steps=1, seed=4, progress=False)
    want = WanPipeline.from_pretrained(preset="tiny", device="cpu")(**call).pixels
    for mode in ("model", "sequential"):
        pipe = WanPipeline.from_pretrained(preset="tiny", device="cpu", offload=mode)
        assert pipe.offload == mode
        assert (pipe(**call).pixels - want).abs().max() <= 1e-5, mode
    tiled = WanPipeline.from_pretrained(preset="tiny", device="cpu", vae_tiling=True)
    assert tiled.vae.tile_latent == 64  # on, but 32x32 frames (8x8 latents) fit one tile
    assert (tiled(**call).pixels - want).abs().max() <= 1e-6
    tiled.enable_vae_tiling(6, 4)  # now the 8x8 latents decode as 2 x 2 tiles
    got = tiled(**call).pixels
    assert got.shape == want.shape and not torch.equal(got, want)
    other = tiled(**{**call, "seed": 5}).pixels  # the same clip, not another one: far closer than another seed's
    assert (got - want).abs().mean() < 0.5 * (other - want).abs().mean()


def test_bfloat16():
    """bf16, the CUDA default, runs the whole pipeline (here on the CPU) and stays near float32."""
    from utils.torch_utils import resolve_dtype

    assert resolve_dtype(None, torch.device("cuda"), default_cuda=WanPipeline.cuda_dtype) == torch.bfloat16
    call = dict(prompt="a lighthouse", steps=2, seed=2, progress=False)
    want = WanPipeline.from_pretrained(preset="tiny", device="cpu")(**call)
    pipe = WanPipeline.from_pretrained(preset="tiny", device="cpu", dtype="bf16")
    assert {next(m.parameters()).dtype for m in (pipe.transformer, pipe.vae, pipe.text_encoder)} == {torch.bfloat16}
    got = pipe(**call)
    assert got.pixels.dtype == torch.float32 and torch.isfinite(got.pixels).all()
    assert (got.pixels - want.pixels).abs().mean() < 0.05


def test_progress_bars_and_facade(capsys):
    from models import generate

    WanPipeline.tiny()(prompt="a kite", steps=2, progress=True)
    err = capsys.readouterr().err
    assert "sampling" in err and "decoding" in err  # one bar over the steps, one over the decoded chunks
    out = generate("video", "sora", preset="tiny", prompt="a kite", steps=2, seed=3, progress=False)
    direct = WanPipeline.from_pretrained(preset="tiny", device="cpu")(prompt="a kite", steps=2, seed=3,
                                                                          progress=False)
    assert len(out.frames[0]) == 5 and (out.pixels - direct.pixels).abs().max() <= 1e-6
