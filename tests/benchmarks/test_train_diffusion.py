"""benchmarks/train_diffusion.py at its toy size: one tiny LoRA configuration timed, figures well formed."""
from __future__ import annotations

import math

import pytest

from benchmarks import train_diffusion


def test_toy_run_prints_well_formed_figures(capsys):
    rows = train_diffusion.main(["--toy", "--models", "sd3"])
    out = capsys.readouterr().out
    assert len(rows) == 1
    r = rows[0]
    assert r["model"] == "sd3" and r["mode"] == "lora" and r["size"] == "tiny"
    assert r["steps_per_s"] > 0 and math.isfinite(r["steps_per_s"]) and r["peak_mb"] >= 0
    assert 0 < r["trained_m"] < r["denoiser_m"] and math.isfinite(r["loss"])
    assert "steps/s" in out and f"{r['steps_per_s']:8.3f}" in out


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        train_diffusion.main(["--toy", "--models", "sd15x"])
    assert e.value.code == 2 and "--models" in capsys.readouterr().err


def test_sd15_mid_size_is_the_widened_unet():
    """The mid size of SD 1.5 is a real widening (tens of millions of parameters, no vector conditioning)."""
    from models.image_generation.stable_diffusion.pipeline_sd15 import SD15Pipeline

    tiny = SD15Pipeline.tiny()
    small = sum(p.numel() for p in tiny.unet.parameters())
    mid = train_diffusion._widen(tiny, "sd15").unet
    assert mid.config.adm_in_channels == 0 and mid.config.model_channels == 128
    assert sum(p.numel() for p in mid.parameters()) > 20 * small
