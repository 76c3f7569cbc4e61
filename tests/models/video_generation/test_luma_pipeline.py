"""LTX-Video sampling (luma_dream/pipeline.py): few-step parity with diffusers' LTXPipeline and
LTXImageToVideoPipeline on the same tiny random components (T5 from transformers with a real SentencePiece
tokenizer, transformer, 0.9 and 0.9.1 VAEs), same seed, prompts as strings, guidance; loading the
diffusers folder and the official single file; distilled timesteps, live previews, user errors."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline, LTXPipeline
from diffusers import LTXVideoTransformer3DModel
from PIL import Image
from safetensors.torch import load_file, save_file

from models.video_generation.luma_dream.config import TRANSFORMER_PRESETS
from models.video_generation.luma_dream.convert import official_to_diffusers
from models.video_generation.luma_dream.model import LTXVideoTransformer
from models.video_generation.luma_dream.pipeline import LTXVideoPipeline, check_frames
from utils.encoders.ltx_vae import LTXVideoVAE, ltx_vae_config
from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder, load_t5_tokenizer
from utils.errors import UserError
from tests.helpers.tokenizers import write_t5_tokenizer

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ltx_video"
# A 0.9.1-style decoder whose levels keep their width (diffusers' reference cannot feed the timestep to a
# widening residual block), with residual depth-to-space upsampling and injected noise.
V091 = dict(decoder_block_out_channels=(8, 8), decoder_layers_per_block=(1, 2, 1),
            decoder_inject_noise=(True, True, False), upsample_residual=(True, False), upsample_factor=(2, 1),
            timestep_conditioning=True)
CALL = dict(height=32, width=32, num_frames=5)


def _randomize(m, seed, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5") / "tokenizer"
    return folder, write_t5_tokenizer(folder)


def _pipeline(tokenizer_folder, vae_extra=None, seed=0) -> LTXVideoPipeline:
    """Tiny components with a real T5 tokenizer and perturbed random weights."""
    folder, info = tokenizer_folder
    t5 = T5TextEncoder(T5EncoderConfig.preset("tiny").with_(vocab_size=info.vocab_size),
                       tokenizer=load_t5_tokenizer(folder))
    transformer = LTXVideoTransformer(replace(TRANSFORMER_PRESETS["tiny"], caption_channels=t5.config.d_model)).eval()
    vae = LTXVideoVAE(ltx_vae_config("tiny", **(vae_extra or {}))).eval()
    _randomize(transformer, seed)
    _randomize(vae, seed + 1)
    _randomize(t5, seed + 2, 0.5)
    return LTXVideoPipeline(transformer, vae, t5)


def _reference(pipe: LTXVideoPipeline, cls=LTXPipeline):
    tr = LTXVideoTransformer3DModel(**pipe.transformer.config.to_diffusers()).eval()
    tr.load_state_dict(official_to_diffusers(pipe.transformer.state_dict()))
    vae = AutoencoderKLLTXVideo(**pipe.vae.config.to_diffusers()).eval()
    vae.load_state_dict(pipe.vae.state_dict())
    sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                            base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
    ref = cls(scheduler=sched, vae=vae, text_encoder=pipe.text_encoder.model, tokenizer=pipe.text_encoder.tokenizer,
              transformer=tr)
    ref.set_progress_bar_config(disable=True)
    return ref


@pytest.mark.parametrize("vae_extra", [None, V091], ids=["0.9", "0.9.1"])
def test_text_to_video_parity_with_diffusers(tokenizer_folder, vae_extra):
    pipe = _pipeline(tokenizer_folder, vae_extra)
    ref = _reference(pipe)
    kw = dict(num_inference_steps=3, guidance_scale=3.0, frame_rate=25, decode_timestep=0.05, decode_noise_scale=0.025)
    with torch.no_grad():
        torch.manual_seed(11)  # diffusers' decoder draws its injected noise from the global generator
        want = ref(prompt="a red square slides right", negative_prompt="blurry", max_sequence_length=16,
                   generator=torch.Generator().manual_seed(11), output_type="pt", **CALL, **kw).frames
    out = pipe(prompt="a red square slides right", negative_prompt="blurry", max_sequence_length=16, seed=11, steps=3,
               guidance_scale=3.0, fps=25, decode_timestep=0.05, decode_noise_scale=0.025, progress=False, **CALL)
    assert out.pixels.shape == want.shape == (1, 5, 3, 32, 32)
    assert (out.pixels - want).abs().max() <= 1e-3
    assert want.std() > 1e-2
    assert len(out.frames[0]) == 5 and out.frames[0][0].size == (32, 32)
    # The prompt matters.
    other = pipe(prompt="rain over a lake", negative_prompt="blurry", max_sequence_length=16, seed=11, steps=3,
                 progress=False, **CALL)
    assert (other.pixels - out.pixels).abs().max() > 1e-3


def test_prompt_embeddings_equal_diffusers(tokenizer_folder):
    pipe = _pipeline(tokenizer_folder)
    ref = _reference(pipe)
    emb, mask = pipe.encode_prompt(["a cat", "a much longer prompt about a dog"], 16)
    want, want_mask, _, _ = ref.encode_prompt(["a cat", "a much longer prompt about a dog"],
                                              do_classifier_free_guidance=False, max_sequence_length=16)
    assert emb.shape == (2, 16, 32)
    assert (emb - want).abs().max() <= 1e-5 and torch.equal(mask.bool(), want_mask.bool())


@pytest.mark.parametrize("vae_extra", [None, V091], ids=["0.9", "0.9.1"])
def test_image_to_video_parity_with_diffusers(tokenizer_folder, vae_extra):
    pipe = _pipeline(tokenizer_folder, vae_extra, seed=3)
    ref = _reference(pipe, LTXImageToVideoPipeline)
    image = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8))
    kw = dict(decode_timestep=0.05, decode_noise_scale=0.025)
    with torch.no_grad():
        torch.manual_seed(5)
        want = ref(image=image, prompt="a cat walks", negative_prompt="blur", num_inference_steps=3, guidance_scale=3.0,
                   max_sequence_length=16, generator=torch.Generator().manual_seed(5), output_type="pt",
                   frame_rate=25, **CALL, **kw).frames
    out = pipe(image=image, prompt="a cat walks", negative_prompt="blur", steps=3, guidance_scale=3.0,
               max_sequence_length=16, seed=5, fps=25, progress=False, **CALL, **kw)
    assert (out.pixels - want).abs().max() <= 1e-3
    # The conditioning frame is kept: its latents are the image's, exactly, in every run.
    lat = pipe(image=image, prompt="a cat walks", negative_prompt="blur", steps=3, max_sequence_length=16, seed=5,
               progress=False, output_type="latent", **CALL).latents
    other = pipe(image=image, prompt="a cat walks", negative_prompt="blur", steps=3, max_sequence_length=16, seed=6,
                 progress=False, output_type="latent", **CALL).latents
    with torch.no_grad():
        given = pipe.encode_image([image], 32, 32, pipe.generators(5, 1))
    assert torch.equal(lat[:, :, :1], given)  # the posterior sample of the video's generator, never stepped
    assert (lat[:, :, 1:] - other[:, :, 1:]).abs().max() > 1e-2
    flipped = pipe(image=Image.fromarray(255 - np.asarray(image)), prompt="a cat walks", negative_prompt="blur",
                   steps=3, max_sequence_length=16, seed=5, progress=False, output_type="latent", **CALL).latents
    assert (flipped[:, :, 0] - lat[:, :, 0]).abs().max() > 1e-2


def test_load_diffusers_folder_and_official_single_file(tokenizer_folder, tmp_path):
    pipe = _pipeline(tokenizer_folder, seed=5)
    run = dict(prompt="a boat", negative_prompt="", steps=2, seed=3, max_sequence_length=16, progress=False, **CALL)
    want = pipe(**run).pixels
    ref = _reference(pipe)
    ref.save_pretrained(tmp_path / "diffusers")
    loaded = LTXVideoPipeline.from_pretrained(tmp_path / "diffusers", device="cpu", dtype="float32")
    assert loaded.preset == "tiny"
    assert loaded.scheduler == pipe.scheduler  # read from scheduler/scheduler_config.json
    assert (loaded(**run).pixels - want).abs().max() <= 1e-5
    # A folder's own scheduler config is the one used.
    cfg_file = tmp_path / "diffusers" / "scheduler" / "scheduler_config.json"
    # (without shift_terminal: with it, any 2-step schedule runs 1 -> 0.1)
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "use_dynamic_shifting": False, "shift": 3.0,
                                    "shift_terminal": None}))
    other = LTXVideoPipeline.from_pretrained(tmp_path / "diffusers", device="cpu", dtype="float32")
    assert not other.scheduler.use_dynamic_shifting and other.scheduler.shift == 3.0
    assert (other(**run).pixels - want).abs().max() > 1e-4

    # The official single file: `model.diffusion_model.` transformer + `vae.` VAE (the official tiny VAE of the
    # golden fixture, made by the Lightricks code), the transformer config in the safetensors metadata.
    golden = load_file(FIXTURES / "vae_golden.safetensors")
    vae_sd = {k[len("v090."):]: v for k, v in golden.items() if k.startswith("v090.vae.")}
    tr_sd = {f"model.diffusion_model.{k}": v.contiguous() for k, v in pipe.transformer.state_dict().items()}
    meta = {"config": json.dumps({"transformer": {"num_attention_heads": 2, "attention_head_dim": 16}})}
    save_file({**tr_sd, **vae_sd}, tmp_path / "ltx-video-2b-v0.9.safetensors", metadata=meta)
    single = LTXVideoPipeline.from_pretrained(tmp_path / "ltx-video-2b-v0.9.safetensors", device="cpu",
                                              dtype="float32", text_encoder=tmp_path / "diffusers")
    assert single.transformer.config == pipe.transformer.config
    for k, v in LTXVideoVAE.from_pretrained(tmp_path / "ltx-video-2b-v0.9.safetensors", preset="tiny").state_dict().items():
        assert torch.equal(single.vae.state_dict()[k], v)
    pipe.vae.load_state_dict(single.vae.state_dict())
    assert (single(**run).pixels - pipe(**run).pixels).abs().max() <= 1e-5
    assert single.preset == "tiny"  # by its size
    # A distilled file names its allowed timesteps in the metadata: a 2B one gets the distilled preset.
    meta = {"config": json.dumps({"transformer": {"num_attention_heads": 2, "attention_head_dim": 16},
                                  "allowed_inference_steps": [1.0, 0.9937]})}
    save_file({**tr_sd, **vae_sd}, tmp_path / "ltxv-distilled.safetensors", metadata=meta)
    distilled = LTXVideoPipeline.from_pretrained(tmp_path / "ltxv-distilled.safetensors", device="cpu",
                                                 dtype="float32", text_encoder=tmp_path / "diffusers")
    assert distilled._distilled and not single._distilled


def test_distilled_timesteps_and_previews():
    pipe = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu")
    calls = []
    out = pipe(prompt="a fox", timesteps=[1.0, 0.9094, 0.725, 0.4219], guidance_scale=1.0, progress=False,
               callback=lambda step, total, frames: calls.append((step, total, tuple(frames.shape), frames)))
    assert [(c[0], c[1]) for c in calls] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert all(c[2] == (1, 3, 3, 8, 8) for c in calls)  # (B, latent frames, RGB, H/4, W/4) of the tiny VAE
    assert all(0 <= c[3].min() and c[3].max() <= 1 for c in calls)
    assert out.pixels.shape == (1, 5, 3, 32, 32)
    # The distilled preset's default: the release's 8 levels, without guidance.
    from models.video_generation.luma_dream.spec import DISTILLED_TIMESTEPS, SPEC

    assert SPEC.default("ltxv-2b-0.9.6-distilled", "timesteps") == DISTILLED_TIMESTEPS
    assert SPEC.default("ltxv-2b-0.9.6-distilled", "guidance_scale") == 1.0
    pipe.preset = "ltxv-2b-0.9.6-distilled"
    n = []
    pipe(prompt="a fox", progress=False, output_type="latent", callback=lambda s, t, f: n.append(t), **CALL)
    assert n == [8] * 8


def test_preview_map_beats_the_mean_colour():
    """On a tiny VAE trained for a few reconstruction steps (a random decoder has no colour to preview), the
    fitted map's held-out error is far below the mean-colour baseline's."""
    from models.video_generation.luma_dream.fit_preview import LatentPreview, mean_colour_error, synthetic_clips

    torch.manual_seed(0)
    vae = LTXVideoVAE(ltx_vae_config("tiny"))
    opt = torch.optim.Adam(vae.parameters(), 3e-3)
    for i in range(30):
        x = synthetic_clips(1, 5, 32, 32, seed=100 + i)
        loss = (vae.decode(vae.encode(x).mode()) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    vae.eval()
    train, held = LatentPreview.pairs(vae, 6, seed=0), LatentPreview.pairs(vae, 2, seed=1)
    preview = LatentPreview.from_pairs(*train)
    assert preview.weight.shape == (3, 8) and preview.bias.shape == (3,)
    assert preview.error(*held) < 0.5 * mean_colour_error(train[1], held[1])


def test_fit_preview_script_round_trip(tmp_path):
    from models.video_generation.luma_dream.fit_preview import LatentPreview, main

    assert main(["--preset", "tiny", "--clips", "2", "--device", "cpu", "--out", str(tmp_path / "map.json")]) == 0
    loaded = LatentPreview.load(tmp_path / "map.json")
    assert loaded.weight.shape == (3, 8)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="no preview map"):
        LatentPreview.load(tmp_path / "bad.json")


def test_bad_inputs_are_one_line():
    pipe = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu")
    with pytest.raises(UserError, match="1 \\+ 2k frames"):
        pipe(prompt="x", num_frames=4, steps=1, progress=False)
    with pytest.raises(UserError, match="multiples of 4"):
        pipe(prompt="x", height=30, steps=1, progress=False)
    with pytest.raises(UserError, match="timesteps must decrease"):
        pipe(prompt="x", timesteps=[0.5, 0.9], progress=False)
    with pytest.raises(UserError, match="1 \\+ 8k frames"):
        check_frames(120)
    check_frames(121)


def test_the_2b_single_file_layout_on_meta():
    """The 2B 0.9 release's single-file key list (transformer + VAE, from the Lightricks code on meta) splits,
    converts and configures to the ltxv-2b transformer and the 0.9 VAE with nothing missing or left over."""
    import gzip

    from models.video_generation.luma_dream.config import transformer_preset
    from models.video_generation.luma_dream.convert import infer_config, split_single_file, to_native
    from utils.encoders.ltx_vae import match_vae_config
    from utils.encoders.ltx_vae_convert import to_native as vae_to_native
    from utils.weights import load_into

    keys = json.load(gzip.open(FIXTURES / "official_keys.json.gz", "rt"))
    with torch.device("meta"):
        sd = {f"model.diffusion_model.{k}": torch.empty(s) for k, s in keys["transformer_2b"].items()}
        sd.update({f"vae.{k}": torch.empty(s) for k, s in keys["vae_0.9"].items()})
    tr, vae = split_single_file(sd)
    native = to_native(tr)
    assert infer_config(native) == transformer_preset("ltxv-2b")
    name, cfg = match_vae_config(vae)
    assert name == "ltxv-0.9"
    with torch.device("meta"):
        load_into(LTXVideoTransformer(transformer_preset("ltxv-2b")), native, what="2B transformer")
        load_into(LTXVideoVAE(cfg), vae_to_native(vae, cfg), what="0.9 VAE")
