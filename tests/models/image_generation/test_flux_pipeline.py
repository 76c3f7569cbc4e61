"""FLUX pipeline: parity with diffusers' FluxPipeline on tiny random components saved as a diffusers
folder and loaded through our real loaders; img2img, inpainting, Fill, Control, CLI and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.image_generation.flux import convert as C
from models.image_generation.flux.pipeline import SCHEDULER_DEV, SCHEDULER_SCHNELL, FluxPipeline
from models.image_generation.flux.sampling import pack_latents, unpack_latents
from tests.helpers.tokenizers import write_clip_tokenizer, write_t5_tokenizer
from utils.errors import UserError, WeightsError

import diffusers

SEQ = 32
SIZE = 64


def diffusers_pipeline(folder, guidance: bool = True, seed: int = 0):
    """A tiny random diffusers FluxPipeline written to `folder` with real-format tokenizers."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline as DFluxPipeline
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

    from utils.encoders.clip import CLIPTextEncoderConfig
    from utils.encoders.t5 import T5EncoderConfig
    from utils.encoders.vae import VAEConfig
    from utils.encoders.vae_convert import config_to_diffusers

    clip_tok = write_clip_tokenizer(folder / "tokenizer")
    t5_tok = write_t5_tokenizer(folder / "tokenizer_2")
    from models.image_generation.flux.model import PRESETS

    params = PRESETS["tiny"].with_(guidance_embed=guidance)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**C.params_to_diffusers_config(params))
    clip_cfg = CLIPTextEncoderConfig.preset("tiny").with_(hidden_size=params.vec_in_dim,
                                                          vocab_size=clip_tok.vocab_size)
    clip = CLIPTextModel(clip_cfg.to_transformers())
    t5_cfg = T5EncoderConfig.preset("tiny").with_(d_model=params.context_in_dim, vocab_size=t5_tok.vocab_size)
    t5 = T5EncoderModel(t5_cfg.to_transformers())
    vae_cfg = VAEConfig.preset("tiny-16").with_(channel_mult=(1, 1, 1, 1))
    vae = AutoencoderKL(**config_to_diffusers(vae_cfg))
    sched = FlowMatchEulerDiscreteScheduler(**(SCHEDULER_DEV if guidance else SCHEDULER_SCHNELL))
    pipe = DFluxPipeline(scheduler=sched, vae=vae, text_encoder=clip, tokenizer=CLIPTokenizer.from_pretrained(
        str(folder / "tokenizer")), text_encoder_2=t5, tokenizer_2=T5Tokenizer.from_pretrained(
        str(folder / "tokenizer_2")), transformer=transformer)
    pipe.save_pretrained(folder)
    return pipe


@pytest.fixture(scope="module")
def dev_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flux_dev")
    return folder, diffusers_pipeline(folder, guidance=True)


@pytest.mark.parametrize("steps", [3])
def test_text_to_image_parity_with_diffusers(dev_folder, steps):
    folder, ref = dev_folder
    ours = FluxPipeline.from_pretrained(folder, device="cpu", dtype=torch.float32)
    assert ours.variant == "dev"
    prompts = ["a red fox in the snow", "a lighthouse on a cliff"]
    gens = [torch.Generator().manual_seed(s) for s in (7, 8)]
    expect = ref(prompt=prompts, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=3.5,
                 generator=gens, max_sequence_length=SEQ, output_type="np").images
    out = ours(prompts, height=SIZE, width=SIZE, steps=steps, guidance=3.5, seed=[7, 8], max_sequence_length=SEQ,
               progress=False)
    got = out.pixels.permute(0, 2, 3, 1).numpy()
    assert got.shape == expect.shape
    assert np.abs(got - expect).max() <= 1e-3
    # the same initial latents: diffusers' packed noise equals ours for the same per-image seeds
    ref_lat = ref.prepare_latents(2, 16, SIZE, SIZE, torch.float32, "cpu",
                                  [torch.Generator().manual_seed(s) for s in (7, 8)])[0]
    noise = torch.cat([torch.randn((1, 16, 8, 8), generator=torch.Generator().manual_seed(s)) for s in (7, 8)])
    assert torch.equal(ref_lat, pack_latents(noise))


def test_schnell_parity_and_defaults(tmp_path):
    ref = diffusers_pipeline(tmp_path, guidance=False)
    ours = FluxPipeline.from_pretrained(tmp_path, device="cpu", dtype=torch.float32)
    assert ours.variant == "schnell"
    expect = ref(prompt="a cat", height=SIZE, width=SIZE * 2, num_inference_steps=4, guidance_scale=0.0,
                 generator=[torch.Generator().manual_seed(3)], max_sequence_length=SEQ, output_type="np").images
    out = ours("a cat", height=SIZE, width=SIZE * 2, seed=3, max_sequence_length=SEQ, progress=False)
    assert np.abs(out.pixels.permute(0, 2, 3, 1).numpy() - expect).max() <= 1e-3
    with pytest.raises(UserError, match="takes no guidance"):
        ours("a cat", guidance=3.5, progress=False)


def test_img2img_parity_with_diffusers(dev_folder):
    from diffusers import FluxImg2ImgPipeline

    folder, ref = dev_folder
    ref_i2i = FluxImg2ImgPipeline(**ref.components)
    ours = FluxPipeline.from_pretrained(folder, device="cpu", dtype=torch.float32)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
    for strength in (0.6, 0.75):  # 0.75 * 4 steps is whole, 0.6 * 4 is not
        expect = ref_i2i(prompt="a fox", image=photo, strength=strength, height=SIZE, width=SIZE,
                         num_inference_steps=4, guidance_scale=3.5, generator=[torch.Generator().manual_seed(5)],
                         max_sequence_length=SEQ, output_type="np").images
        # diffusers draws the VAE sample before the noise; ours draws the noise first, so pass theirs
        out = ours("a fox", image=photo, strength=strength, steps=4, guidance=3.5, seed=5,
                   max_sequence_length=SEQ, progress=False, latents=_i2i_noise(ref_i2i, photo, 5))
        assert np.abs(out.pixels.permute(0, 2, 3, 1).numpy() - expect).max() <= 1e-3


def _i2i_noise(ref, photo, seed: int) -> torch.Tensor:
    """The noise diffusers' img2img draws (after sampling the image latents from the same generator)."""
    g = torch.Generator().manual_seed(seed)
    image = ref.image_processor.preprocess(photo, height=SIZE, width=SIZE)
    ref._encode_vae_image(image=image, generator=g)
    return torch.randn((1, 16, SIZE // 8, SIZE // 8), generator=g)


def test_pack_unpack_roundtrip():
    z = torch.randn(2, 16, 6, 10)
    x = pack_latents(z)
    assert x.shape == (2, 15, 64)
    assert torch.equal(unpack_latents(x, 6, 10), z)


def test_tiny_runs_and_is_reproducible():
    pipe = FluxPipeline.from_pretrained(preset="tiny", device="cpu")
    a = pipe("a red fox", seed=1, progress=False)
    b = pipe("a red fox", seed=1, progress=False)
    c = pipe("a red fox", seed=2, progress=False)
    assert a.images[0].size == (64, 64)
    assert torch.equal(a.latents, b.latents)
    assert not torch.equal(a.latents, c.latents)
    # image i depends only on its own seed, not on the batch
    batch = pipe(["a red fox", "a blue car"], seed=[1, 5], progress=False)
    assert torch.allclose(batch.latents[:1], a.latents, atol=1e-5)
    # a negative prompt runs true CFG (two branches)
    neg = pipe("a red fox", negative_prompt="blurry", seed=1, progress=False)
    assert not torch.equal(neg.latents, a.latents)


def test_seed_means_seed_plus_image_index():
    """Image i of a call uses seed + i: image 2 of four made with seed 5 is the image made with seed 7,
    in a text-to-image and an img2img call (where each image's VAE sample comes from its generator too)."""
    # float64, so that the batch size cannot move the numbers (in float32 it does, by ~1e-6)
    pipe = FluxPipeline.from_pretrained(preset="tiny", device="cpu", dtype=torch.float64)
    four = pipe("a red fox", num_images=4, seed=5, steps=2, progress=False)
    one = pipe("a red fox", seed=7, steps=2, progress=False)
    assert (four.latents[2:3] - one.latents).abs().max() <= 1e-5
    assert (four.pixels[2:3] - one.pixels).abs().max() <= 1e-5
    assert (four.latents[0] - four.latents[1]).abs().max() > 1e-2  # and the images differ
    photo = one.images[0]
    four = pipe("a red fox", image=photo, strength=0.75, num_images=4, seed=5, steps=4, progress=False)
    one = pipe("a red fox", image=photo, strength=0.75, seed=7, steps=4, progress=False)
    assert (four.pixels[2:3] - one.pixels).abs().max() <= 1e-5


def test_size_and_input_errors():
    pipe = FluxPipeline.tiny()
    with pytest.raises(UserError, match="multiples of 16"):
        pipe("x", height=72, width=64, progress=False)
    with pytest.raises(UserError, match="needs the image"):
        pipe("x", mask=Image.new("L", (64, 64)), progress=False)
    with pytest.raises(UserError, match="flow-euler"):
        pipe("x", scheduler="ddim", progress=False)
    with pytest.raises(UserError, match="strength"):
        pipe("x", image=Image.new("RGB", (64, 64)), strength=1.5, progress=False)
    with pytest.raises(UserError, match="control images are for"):
        pipe("x", control=Image.new("RGB", (64, 64)), progress=False)


def test_img2img_and_inpainting_with_dev(tmp_path):
    pipe = FluxPipeline.tiny()
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 96, 3), dtype=np.uint8))
    out = pipe("x", image=photo, strength=0.5, steps=4, seed=0, progress=False)
    assert out.images[0].size == (96, 80)  # the input image sets the size
    mask = Image.new("L", (96, 80))
    mask.paste(255, (0, 0, 48, 80))
    inp = pipe("x", image=photo, mask=mask, steps=4, seed=0, progress=False)
    # kept region: the clean latents of the photo exactly (the last step puts them back)
    z = inp.latents
    g = torch.Generator().manual_seed(0)
    torch.randn((1, 16, 10, 12), generator=g)  # the pipeline draws the noise first, then the VAE sample
    with torch.inference_mode():
        init = pipe.encode_latents(pipe_image(photo), [g])
    assert torch.allclose(z[..., 6:], init[..., 6:], atol=1e-5)


def pipe_image(photo):
    from utils.data.image_inputs import load_image

    return load_image(photo, (80, 96))


def test_fill_and_control_variants():
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = Image.new("L", (64, 64))
    mask.paste(255, (16, 16, 48, 48))
    fill = FluxPipeline.tiny("fill")
    assert fill.variant == "fill" and fill.params.in_channels == 384
    out = fill("x", image=photo, mask=mask, steps=2, seed=0, progress=False)
    assert out.images[0].size == (64, 64)
    with pytest.raises(UserError, match="Fill inpaints"):
        fill("x", progress=False)
    canny = FluxPipeline.tiny("canny")
    assert canny.variant == "canny" and canny.params.in_channels == 128
    a = canny("x", image=photo, steps=2, seed=0, progress=False)  # control computed from the photo
    from models.image_generation.flux.control import canny_control
    from utils.data.image_inputs import load_image

    edges = canny_control(load_image(photo, (64, 64)))
    b = canny("x", control=(edges + 1) / 2, steps=2, seed=0, progress=False)
    assert torch.allclose(a.latents, b.latents, atol=1e-5)
    with pytest.raises(UserError, match="needs a control image"):
        canny("x", progress=False)
    depth = FluxPipeline.tiny("depth")
    assert depth.variant == "depth"
    depth("x", control=photo, steps=2, seed=0, progress=False)
    with pytest.raises(UserError, match="no depth estimator is in the local cache"):
        depth("x", image=photo, steps=2, seed=0, progress=False)


def test_offload_matches_plain_run():
    """accelerate's hooks with the CPU as the execution device: the wiring (every model hooked, the VAE
    reached through its hook) and the same images; the memory saving itself needs a GPU."""
    import accelerate  # noqa: F401 - a hard dependency: a broken install fails here
    pipe = FluxPipeline.tiny()
    photo = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    expect = pipe("a red fox", seed=0, steps=2, progress=False).pixels
    expect_i2i = pipe("a red fox", image=photo, strength=0.75, seed=0, steps=4, progress=False).pixels
    for mode in ("model", "sequential"):
        off = FluxPipeline.from_pretrained(preset="tiny", device="cpu", offload=mode)
        assert off.offload == mode and all(hasattr(m, "_hf_hook") for m in (off.clip, off.t5, off.transformer))
        assert torch.allclose(off("a red fox", seed=0, steps=2, progress=False).pixels, expect, atol=1e-6)
        got = off("a red fox", image=photo, strength=0.75, seed=0, steps=4, progress=False).pixels
        assert torch.allclose(got, expect_i2i, atol=1e-6)


def test_missing_weights_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        FluxPipeline.from_pretrained(preset="dev", device="cpu")
    msg = str(err.value)
    assert "hf download black-forest-labs/FLUX.1-dev" in msg and "gated" in msg and "--preset tiny" in msg
    with pytest.raises(WeightsError, match="FLUX.1-schnell.*--preset tiny"):
        FluxPipeline.from_pretrained(device="cpu")


def test_facade_and_cli(tmp_path, capsys):
    import models
    from inference.generate_image import main

    out = models.generate("image", "flux", preset="tiny", prompt="a red fox", seed=0, progress=False)
    assert len(out.images) == 1
    target = tmp_path / "fox.png"
    main(["--model", "flux", "--preset", "tiny", "--prompt", "a red fox", "--steps", "2", "--out", str(target)])
    assert Image.open(target).size == (64, 64)
    with pytest.raises(SystemExit) as exc:
        main(["--model", "flux", "--preset", "tiny", "--prompt", "x", "--height", "100", "--out", str(target)])
    assert exc.value.code == 2
    assert "multiples of 16" in capsys.readouterr().err


def test_default_preset_from_a_populated_hub_cache(tmp_path, monkeypatch):
    """`--model flux` with nothing else: schnell from the hub cache (offline), the transformer from the
    official single file and the encoders/VAE from the repo's diffusers folders."""
    import os
    import shutil

    from safetensors.torch import save_file

    from models.image_generation.flux import FluxTransformer

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo = cache / "models--black-forest-labs--FLUX.1-schnell"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    ref = diffusers_pipeline(snap, guidance=False)
    # the official single file holds the same transformer in the native layout
    src = FluxTransformer.from_pretrained(snap / "transformer", device="cpu", dtype=torch.float32)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, snap / "flux1-schnell.safetensors")
    shutil.rmtree(snap / "transformer")  # so only the single file can provide it
    pipe = FluxPipeline.from_pretrained(device="cpu", dtype=torch.float32)
    assert pipe.variant == "schnell" and pipe.preset == "schnell" and pipe.max_sequence_length == 256
    expect = ref(prompt="a cat", height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=0.0,
                 generator=[torch.Generator().manual_seed(0)], max_sequence_length=256, output_type="np").images
    out = pipe("a cat", height=SIZE, width=SIZE, seed=0, progress=False)
    assert np.abs(out.pixels.permute(0, 2, 3, 1).numpy() - expect).max() <= 1e-3
    assert os.environ["HF_HUB_OFFLINE"] == "1"
