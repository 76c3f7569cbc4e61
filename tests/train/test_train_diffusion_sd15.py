"""train_diffusion.py --model sd15: each mode lowers the held-out loss of the tiny SD 1.5, the LoRA has the
closed-form size and leaves the base alone, a LoRA trained here (UNet and text encoder) loads into diffusers'
StableDiffusionPipeline LoRA loader in both the diffusers and the kohya format with the same outputs, and
the SD 2.1 preset trains v-prediction."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests.train.test_train_diffusion import _argv, _run, _trainer
from utils.diffusion.lora import layers as L


@pytest.mark.parametrize("mode", [pytest.param("full", marks=pytest.mark.slow), "lora",
                                  pytest.param("dreambooth", marks=pytest.mark.slow)])
def test_each_mode_lowers_the_held_out_loss(tmp_path, mode):
    _, summary = _run(*_argv(tmp_path, "sd15", mode, 6, "--eval-batches", "2", "--lr", "3e-3"))
    assert summary["eval_loss"] < summary["eval_loss_start"]
    assert len(summary["history"]) == 6 and all(torch.isfinite(torch.tensor(h["loss"])) for h in summary["history"])
    written = Path(summary["lora"] if mode != "full" else summary["weights"])
    assert written.is_file() and (tmp_path / "samples").is_dir()
    if mode == "dreambooth":
        assert len(list((tmp_path / "class_images").glob("*.png"))) == 2


def _closed_form(cfg, rank: int) -> int:
    """r * (in + out) over the attention and feed-forward layers of every transformer block of the UNet:
    a block of width d with text width c has attn1 q/k/v/out (4 x 2d), attn2 q/out (2 x 2d) and k/v (2 x (c + d)),
    GEGLU in (d -> 8d) and out (4d -> d): 28d + 2c."""
    widths = []
    for level, (mult, depth) in enumerate(zip(cfg.channel_mult, cfg.transformer_depth)):
        d = cfg.model_channels * mult
        widths += [d] * depth * (cfg.num_res_blocks + cfg.num_res_blocks + 1)  # input and output blocks
    widths += [cfg.model_channels * cfg.channel_mult[-1]] * cfg.transformer_depth_middle
    return rank * sum(28 * d + 2 * cfg.context_dim for d in widths)


def test_lora_parameter_count_is_the_closed_form_and_the_base_is_untouched(tmp_path):
    trainer = _trainer(*_argv(tmp_path, "sd15", "lora", 2, "--rank", "3", "--lr", "1e-2"))
    trainer._build()
    unet = trainer.pipe.unet
    assert sum(q.numel() for g in trainer.opt.param_groups for q in g["params"]) == _closed_form(unet.config, 3)
    base = {k: v.clone() for k, v in L.base_state_dict(unet).items()}
    text = {k: v.clone() for k, v in trainer.pipe.text_encoder.model.state_dict().items()}
    summary = trainer.run()
    after = L.base_state_dict(unet)
    assert set(after) == set(base) and all(torch.equal(after[k], base[k]) for k in base)
    assert all(torch.equal(v, text[k]) for k, v in trainer.pipe.text_encoder.model.state_dict().items())
    assert summary["history"][0]["loss"] != summary["history"][-1]["loss"]


def _diffusers_unet(unet):
    from diffusers import UNet2DConditionModel

    from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_native_to_diffusers

    ref = UNet2DConditionModel(**unet_config_to_diffusers(unet.config)).eval()
    ref.load_state_dict(unet_native_to_diffusers(L.base_state_dict(unet), unet.config))
    return ref


@pytest.mark.parametrize("fmt", ["diffusers", pytest.param("kohya", marks=pytest.mark.slow)])
def test_a_lora_trained_here_loads_into_diffusers_with_the_same_output(tmp_path, fmt):
    """UNet + text-encoder LoRA trained 3 steps and saved (diffusers or kohya `lora_unet_` / `lora_te_` names):
    diffusers' StableDiffusionLoraLoaderMixin.load_lora_weights on the same base gives the same UNet output and
    text states (1e-4) as the run's own adapters and as our loader on a fresh tiny pipeline."""
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
    from safetensors.torch import load_file

    from models.image_generation.stable_diffusion.pipeline_sd15 import SD15Pipeline
    from tests.models.image_generation.test_lora_interop import _stub

    trainer, summary = _run(*_argv(tmp_path, "sd15", "lora", 3, "--lr", "2e-2", "--rank", "2", "--train-text-encoder",
                                   "--lora-format", fmt))
    keys = list(load_file(summary["lora"]))
    prefixes = ("lora_unet_", "lora_te_") if fmt == "kohya" else ("unet.", "text_encoder.")
    assert all(any(k.startswith(p) for k in keys) for p in prefixes)
    pipe = trainer.pipe
    unet = pipe.unet.eval()
    ref = _diffusers_unet(unet)
    ref_te = copy.deepcopy(SD15Pipeline.tiny().text_encoder.model)
    _stub(StableDiffusionLoraLoaderMixin, unet=ref, text_encoder=ref_te).load_lora_weights(
        str(tmp_path), weight_name="lora.safetensors")
    ours = SD15Pipeline.tiny()
    ours.load_lora(summary["lora"])
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10.0, 700.0])
    ctx = torch.randn(2, 5, unet.config.context_dim, generator=g)
    with torch.no_grad():
        trained, loaded = unet(x, t, ctx), ours.unet.eval()(x, t, ctx)
        want = ref(x, t, ctx).sample
        base = _diffusers_unet(ours.unet)(x, t, ctx).sample
    assert (trained - base).abs().max() > 1e-3  # the adapter changes the output
    assert (trained - want).abs().max() <= 1e-4 and (loaded - want).abs().max() <= 1e-4
    ids = pipe.text_encoder.tokenize(["a red circle"])["input_ids"]
    with torch.no_grad():
        pipe.text_encoder.model.eval()
        want = ref_te(input_ids=ids).last_hidden_state
        untouched = SD15Pipeline.tiny().text_encoder(ids).last_hidden_state
        assert (pipe.text_encoder(ids).last_hidden_state - want).abs().max() <= 1e-4
        assert (ours.text_encoder(ids).last_hidden_state - want).abs().max() <= 1e-4
        assert (untouched - want).abs().max() > 1e-4  # the text LoRA trained something


def test_sd21_trains_v_prediction_and_sd15_epsilon():
    """The recipe follows the release: SD 2.1 (768 px) is a v model, SD 1.5 an epsilon model."""
    from models.image_generation.stable_diffusion.training import sd15_recipe

    v, eps = sd15_recipe("sd21").defaults, sd15_recipe("sd15").defaults
    assert (v.prediction_type, v.resolution) == ("v_prediction", 768)
    assert (eps.prediction_type, eps.resolution) == ("epsilon", 512)

