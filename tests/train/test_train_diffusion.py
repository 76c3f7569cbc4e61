"""train_diffusion.py: every mode lowers the loss of every tiny model, LoRA counts and leaves the base alone,
a LoRA trained here loads into diffusers with the same output, resume is bit-exact, bad input is one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from train.train_diffusion import build_parser, main, make_trainer, train
from utils.diffusion.lora import layers as L

ROOT = Path(__file__).resolve().parents[2]
DREAMBOOTH = ("--instance-prompt", "a photo of sks shape", "--class-prompt", "a photo of a shape",
              "--num-class-images", "2")


def _argv(out: Path, model: str, mode: str = "lora", steps: int = 2, *extra: str) -> list[str]:
    argv = ["--model", model, "--mode", mode, "--steps", str(steps), "--out", str(out), "--no-progress", "--cpu",
            "--sample-steps", "2", *extra]
    return argv + list(DREAMBOOTH) if mode == "dreambooth" else argv


def _trainer(*argv: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny T5 reads 16 tokens: every caption is truncated
        return make_trainer(build_parser().parse_args(list(argv)))


def _run(*argv: str) -> tuple[object, dict]:
    trainer = _trainer(*argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trainer, trainer.run()


FAST = {("sd3", "lora"), ("flux", "full"), ("flux", "dreambooth")}
"""The default suite's share; the SDXL UNet is the slowest tiny model, its runs are marked slow."""


@pytest.mark.parametrize("model,mode", [
    pytest.param(m, mode, marks=() if (m, mode) in FAST else pytest.mark.slow)
    for m in ("sdxl", "sd3", "flux") for mode in ("full", "lora", "dreambooth")])
def test_each_mode_lowers_the_held_out_loss(tmp_path, model, mode):
    """The loss on fixed held-out draws (same images, timesteps, noise) drops after a few steps."""
    steps = 6 if (model, mode) in FAST else 15
    _, summary = _run(*_argv(tmp_path, model, mode, steps, "--eval-batches", "2", "--lr", "3e-3"))
    assert summary["eval_loss"] < summary["eval_loss_start"]
    assert len(summary["history"]) == steps and all(torch.isfinite(torch.tensor(h["loss"])) for h in summary["history"])
    written = Path(summary["lora"] if mode != "full" else summary["weights"])
    assert written.is_file() and (tmp_path / "samples").is_dir() and any((tmp_path / "tb").iterdir())
    if mode == "dreambooth":
        assert len(list((tmp_path / "class_images").glob("*.png"))) == 2  # made by the model itself
        assert all("prior_loss" in h for h in summary["history"])


def test_lora_parameter_count_is_the_closed_form_and_the_base_is_untouched(tmp_path):
    """FLUX: rank r on the double blocks' qkv/proj/MLP and the single blocks' linear1/linear2 trains
    r * (in + out) per layer; after training every base weight is bit-identical."""
    trainer = _trainer(*_argv(tmp_path, "flux", "lora", 2, "--rank", "3", "--lr", "1e-2"))
    trainer._build()
    p = trainer.pipe.transformer.params
    d, h, r = p.hidden_size, int(p.hidden_size * p.mlp_ratio), 3
    double = 2 * ((d + 3 * d) + (d + d) + (d + h) + (h + d))  # image and text streams
    single = (d + 3 * d + h) + (d + h + d)
    want = r * (p.depth * double + p.depth_single_blocks * single)
    trained = sum(q.numel() for g in trainer.opt.param_groups for q in g["params"])
    assert trained == want
    base = {k: v.clone() for k, v in L.base_state_dict(trainer.pipe.transformer).items()}
    others = {k: v.clone() for k, v in trainer.pipe.vae.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = trainer.run()
    after = L.base_state_dict(trainer.pipe.transformer)
    assert set(after) == set(base) and all(torch.equal(after[k], base[k]) for k in base)
    assert all(torch.equal(v, others[k]) for k, v in trainer.pipe.vae.state_dict().items())
    moved = [a for a, b, _, _ in L.adapter_weights(trainer.pipe.transformer, "trained").values()]
    assert summary["steps"] == 2 and len(moved) > 0


def test_sdxl_text_encoder_lora_counts_and_keeps_the_encoders(tmp_path):
    trainer = _trainer(*_argv(tmp_path, "sdxl", "lora", 1, "--rank", "2", "--train-text-encoder"))
    trainer._build()
    groups = trainer.opt.param_groups
    assert len(groups) == 3  # UNet, CLIP-L, bigG
    for group, enc in zip(groups[1:], trainer.pipe.text_encoders):
        layers = [m for n, m in enc.model.named_modules() if n.endswith(("q_proj", "k_proj", "v_proj", "out_proj"))
                  and hasattr(m, "base_layer")]
        assert sum(q.numel() for q in group["params"]) == sum(2 * (m.in_features + m.out_features) for m in layers) > 0


def _diffusers_sdxl(unet):
    from diffusers import UNet2DConditionModel

    from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_native_to_diffusers

    ref = UNet2DConditionModel(**unet_config_to_diffusers(unet.config)).eval()
    ref.load_state_dict(unet_native_to_diffusers(L.base_state_dict(unet), unet.config))
    return ref


@pytest.mark.slow
def test_a_lora_trained_here_loads_into_diffusers_with_the_same_output(tmp_path):
    """SDXL UNet + both text encoders trained 3 steps and saved: diffusers' load_lora_weights on the same base
    gives the same UNet output and text features (1e-4) as the run's own adapters and as our loader."""
    from diffusers.loaders.lora_pipeline import StableDiffusionXLLoraLoaderMixin

    from models.image_generation.stable_diffusion.conditioning import sdxl_vector
    from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline
    from tests.models.image_generation.test_lora_interop import _stub

    trainer, summary = _run(*_argv(tmp_path, "sdxl", "lora", 3, "--lr", "2e-2", "--rank", "2", "--train-text-encoder"))
    pipe = trainer.pipe
    unet = pipe.unet.eval()
    ref = _diffusers_sdxl(unet)
    ref_te = [__import__("copy").deepcopy(e.model) for e in SDXLPipeline.tiny().text_encoders]
    _stub(StableDiffusionXLLoraLoaderMixin, unet=ref, text_encoder=ref_te[0], text_encoder_2=ref_te[1]
          ).load_lora_weights(str(tmp_path), weight_name="lora.safetensors")
    ours = SDXLPipeline.tiny()
    ours.load_lora(summary["lora"])
    g = torch.Generator().manual_seed(0)
    cfg = unet.config
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10.0, 700.0])
    ctx = torch.randn(2, 5, cfg.context_dim, generator=g)
    pooled = torch.randn(2, cfg.adm_in_channels - 6 * cfg.addition_time_embed_dim, generator=g)
    ids = torch.tensor([[64.0, 48.0, 0.0, 8.0, 32.0, 32.0], [32.0, 32.0, 0.0, 0.0, 32.0, 32.0]])
    with torch.no_grad():
        y = sdxl_vector(pooled, ids, cfg.addition_time_embed_dim)
        trained, loaded = unet(x, t, ctx, y), ours.unet.eval()(x, t, ctx, y)
        want = ref(x, t, ctx, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        base = _diffusers_sdxl(ours.unet)(x, t, ctx, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
    assert (trained - base).abs().max() > 1e-3  # the adapter changes the output
    assert (trained - want).abs().max() <= 1e-4 and (loaded - want).abs().max() <= 1e-4
    ids = pipe.text_encoders[1].tokenize(["a red circle"])["input_ids"]
    with torch.no_grad():
        for enc, mine, r in zip(pipe.text_encoders, ours.text_encoders, ref_te):
            enc.model.eval()
            want = r(input_ids=ids, output_hidden_states=True).hidden_states[-2]
            assert (enc(ids).hidden_states[-2] - want).abs().max() <= 1e-4
            assert (mine(ids).hidden_states[-2] - want).abs().max() <= 1e-4


def test_sd3_lora_trained_here_loads_into_diffusers(tmp_path):
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.lora_pipeline import SD3LoraLoaderMixin

    from models.image_generation.stable_diffusion.convert_mmdit import mmdit_config_to_diffusers, mmdit_native_to_diffusers
    from tests.models.image_generation.test_lora_interop import _stub

    trainer, summary = _run(*_argv(tmp_path, "sd3", "lora", 2, "--lr", "2e-2", "--rank", "2"))
    mm = trainer.pipe.transformer.eval()
    ref = SD3Transformer2DModel(**mmdit_config_to_diffusers(mm.config)).eval()
    ref.load_state_dict(mmdit_native_to_diffusers(L.base_state_dict(mm)))
    _stub(SD3LoraLoaderMixin, transformer=ref, text_encoder=None, text_encoder_2=None).load_lora_weights(
        str(tmp_path), weight_name="lora.safetensors")
    g = torch.Generator().manual_seed(0)
    c = mm.config
    x, t = torch.randn(2, c.in_channels, 8, 8, generator=g), torch.tensor([20.0, 900.0])
    ctx, pooled = torch.randn(2, 6, c.context_in_dim, generator=g), torch.randn(2, c.adm_in_channels, generator=g)
    with torch.no_grad():
        got = mm(x, t, ctx, pooled)
        want = ref(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=pooled, timestep=t).sample
    assert (got - want).abs().max() <= 1e-4


@pytest.mark.parametrize("model,extra", [
    pytest.param("flux", ("--mode", "full", "--ema", "0.9"), marks=pytest.mark.slow),
    ("sd3", ("--grad-accum", "2", "--random-crop", "--random-flip", "--caption-dropout", "0.3", "--rank", "2")),
])
def test_resume_is_bit_exact(tmp_path, model, extra):
    """4 steps straight, or 2 steps, stop, resume to 4: the same losses and the same trained weights."""
    from utils.training.checkpoints import load_checkpoint

    base = ["--model", model, "--no-progress", "--cpu", "--ckpt-every", "2", "--keep", "0", *extra]
    _, straight = _run(*base, "--steps", "4", "--out", str(tmp_path / "a"))
    _run(*base, "--steps", "2", "--out", str(tmp_path / "b"))
    _, resumed = _run(*base, "--steps", "4", "--out", str(tmp_path / "b"), "--resume", "auto")
    a = [h["loss"] for h in straight["history"]]
    b = [json.loads(line)["loss"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [h["step"] for h in resumed["history"]] == [3, 4] and a == b
    ka, kb = (load_checkpoint(sorted((tmp_path / d / "checkpoints").iterdir())[-1]) for d in "ab")
    key = "denoiser" if "full" in extra else "lora"
    assert ka[key].keys() == kb[key].keys() and all(torch.equal(ka[key][k], kb[key][k]) for k in ka[key])
    if "ema" in ka:
        assert all(torch.equal(ka["ema"][k], kb["ema"][k]) for k in ka["ema"])
        assert any(not torch.equal(ka["ema"][k], ka["denoiser"][k]) for k in ka["ema"])  # a real average


def test_resume_refuses_other_settings(tmp_path, capsys):
    _run(*_argv(tmp_path, "sd3", "lora", 1, "--rank", "2"))
    with pytest.raises(SystemExit) as e:
        main(_argv(tmp_path, "sd3", "lora", 2, "--rank", "3", "--resume", "auto"))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--rank 2" in err[0]


def test_caches_give_the_same_losses_and_are_reused(tmp_path):
    plain = _run(*_argv(tmp_path / "a", "sd3", "lora", 2, "--rank", "2"))[1]
    cache = tmp_path / "cache"
    cached = _run(*_argv(tmp_path / "b", "sd3", "lora", 2, "--rank", "2", "--cache-latents", "--cache-text",
                         "--cache-dir", str(cache)))[1]
    assert len(list(cache.rglob("*.safetensors"))) > 48  # every image and every caption once
    for x, y in zip(plain["history"], cached["history"]):
        assert abs(x["loss"] - y["loss"]) <= 1e-4
    again = _trainer(*_argv(tmp_path / "c", "sd3", "lora", 1, "--rank", "2", "--cache-latents", "--cache-text",
                            "--cache-dir", str(cache)))
    again._build()
    assert again.caches["latents"].fill([], lambda ks: []) == 0


def test_sdxl_micro_conditioning_follows_each_image(tmp_path):
    """The UNet's time ids are each image's original size, crop offset and bucket size; buckets keep shapes."""
    from utils.data.captioned import collate_captioned

    for extra in (("--random-crop", "--no-buckets"), ()):
        trainer = _trainer(*_argv(tmp_path / str(len(extra)), "sdxl", "lora", 1, *extra))
        trainer._build()
        items = [trainer.data[(i, 5)] for i in (0, 1)]
        for it in items:
            ids = trainer.recipe.time_ids(collate_captioned([it]))
            assert ids[0].tolist() == [*it["original_size"], *it["crop_top_left"], *it["target_size"]]
        if extra:  # a 48 x 80 image resized to cover 32 x 32 is cropped at a random column
            assert items[1]["original_size"] == (48, 80) and items[1]["target_size"] == (32, 32)
            assert items[1]["crop_top_left"][0] == 0 and 0 < items[1]["crop_top_left"][1] <= 53 - 32
        else:  # square and landscape images in buckets of their own shape
            assert items[0]["target_size"] == (32, 32) and items[1]["target_size"] == (24, 40)


def test_folder_data_missing_captions_and_a_corrupt_image(tmp_path, capsys):
    """A folder where 2 images lack captions and one file is broken trains: the broken one is skipped with a
    count, the uncaptioned ones train with the empty caption, each said in one warning."""
    from utils.data.captioned_shapes import write_captioned_shapes

    data = write_captioned_shapes(tmp_path / "data", n=8)
    rows = (data / "metadata.jsonl").read_text().splitlines()
    (data / "metadata.jsonl").write_text("\n".join(rows[2:]) + "\n")
    (data / "0003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    main(_argv(tmp_path / "run", "sd3", "lora", 1, "--data", str(data), "--batch-size", "1", "--no-buckets"))
    err = capsys.readouterr().err
    assert "skipp" in err and "1 " in err and "2 of 7 images" in err
    assert (tmp_path / "run" / "lora.safetensors").is_file()


@pytest.mark.parametrize("extra,words", [
    (("--rank", "0"), "--rank must be at least 1"),
    (("--mode", "dreambooth"), "--instance-prompt"),
    (("--optimizer", "adamw8bit"), "adamw8bit"),
    (("--model", "stylegan3"), "stylegan3"),
])
def test_bad_settings_exit_2_in_one_line(tmp_path, capsys, extra, words):
    with pytest.raises(SystemExit) as e:
        main(["--model", "sd3", "--steps", "1", "--out", str(tmp_path / "o"), "--no-progress", "--cpu", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_processes_with_accelerate_launch(tmp_path):
    """`accelerate launch --cpu --num_processes 2`: DDP over gloo, both ranks step in lockstep, one LoRA file."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train" / "train_diffusion.py"),
           *_argv(tmp_path, "flux", "lora", 2, "--batch-size", "1")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 2 steps" in done.stdout and (tmp_path / "lora.safetensors").is_file()
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("model", ["sd3", "sd15"])
def test_generate_image_applies_a_trained_lora_at_its_scale(tmp_path, model):
    """generate_image.py --lora PATH[:SCALE]: scale 0 is the base model, scale 1 a different image."""
    import numpy as np
    from PIL import Image

    from inference.generate_image import main as generate

    _, summary = _run(*_argv(tmp_path / "run", model, "lora", 2, "--lr", "5e-2", "--rank", "2"))
    images = {}
    for name, extra in (("base", ()), ("zero", ("--lora", f"{summary['lora']}:0")), ("one", ("--lora", summary["lora"]))):
        out = tmp_path / f"{name}.png"
        generate(["--model", model, "--preset", "tiny", "--steps", "2", "--seed", "1", "--prompt", "a red circle",
                  "--height", "32", "--width", "32", "--out", str(out), *extra])
        images[name] = np.asarray(Image.open(out), dtype=np.int16)
    assert np.array_equal(images["base"], images["zero"])
    assert np.abs(images["one"] - images["base"]).max() > 0


def test_gradient_checkpointing_changes_memory_not_numbers(tmp_path):
    """SD3 LoRA with and without --gradient-checkpointing: the same losses and the same adapter (fp32)."""
    from safetensors.torch import load_file

    runs = [_run(*_argv(tmp_path / str(i), "sd3", "lora", 2, "--rank", "2", *extra))[1]
            for i, extra in enumerate([(), ("--gradient-checkpointing",)])]
    for a, b in zip(runs[0]["history"], runs[1]["history"]):
        assert abs(a["loss"] - b["loss"]) <= 1e-6
    la, lb = load_file(runs[0]["lora"]), load_file(runs[1]["lora"])
    assert la.keys() == lb.keys() and all(torch.allclose(la[k], lb[k], atol=1e-6) for k in la)


def test_full_mode_writes_native_weights_with_their_config(tmp_path):
    """Full fine-tuning writes the denoiser's native state dict (what the trainer ended with) and its config."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    trainer, summary = _run(*_argv(tmp_path, "flux", "full", 2))
    saved = load_file(summary["weights"])
    mine = trainer.pipe.transformer.state_dict()
    assert saved.keys() == mine.keys() and all(torch.equal(saved[k], mine[k].contiguous()) for k in saved)
    with safe_open(summary["weights"], "pt") as f:
        assert "hidden_size" in json.dumps(f.metadata())
