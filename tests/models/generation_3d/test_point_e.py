"""Point-E against OpenAI's point-e code: golden outputs of the reference at tiny configs with seeded
random weights (tests/fixtures/point_e/make_golden.py), and the released configs' keys and shapes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.generation_3d.point_e.config import PRESETS
from models.generation_3d.point_e.model import PointESDF, PointETransformer
from utils.weights import load_into

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "point_e"


def _golden(name: str):
    data = load_file(str(FIXTURES / f"golden_{name}.safetensors"))
    state = {k[len("state."):]: v for k, v in data.items() if k.startswith("state.")}
    inputs = {k[len("in."):]: v for k, v in data.items() if k.startswith("in.")}
    return state, inputs, data["out"]


@pytest.mark.parametrize("name", ["tiny-textvec", "tiny", "tiny-upsample"])
def test_transformers_match_the_reference_code(name):
    state, inputs, expected = _golden(name)
    model = load_into(PointETransformer(PRESETS[name]), state, what="Point-E golden weights").eval()
    with torch.no_grad():
        got = model(inputs["x"], inputs["t"], clip=inputs.get("clip"), low_res=inputs.get("low_res"))
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max() <= 1e-4


def test_sdf_model_matches_the_reference_code():
    state, inputs, expected = _golden("tiny-sdf")
    model = load_into(PointESDF(PRESETS["tiny-sdf"]), state, what="Point-E golden weights").eval()
    with torch.no_grad():
        got = model(inputs["queries"], inputs["cloud"])
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["base40M-imagevec", "base40M-textvec", "base40M-uncond", "base40M", "base300M",
                                  "base1B", "upsample", "sdf"])
def test_released_configs_have_the_reference_keys_and_shapes_on_meta(name):
    released = json.loads((FIXTURES / "released_keys.json").read_text())[name]
    cfg = PRESETS[name]
    with torch.device("meta"):
        model = PointESDF(cfg) if name == "sdf" else PointETransformer(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == released


def test_guided_karras_sampling_matches_the_reference_run():
    from models.generation_3d.point_e.diffusion import GaussianDiffusion, karras_sample, scale_channels

    state, _, _ = _golden("tiny-textvec")
    model = load_into(PointETransformer(PRESETS["tiny-textvec"]), state, what="Point-E golden weights").eval()
    data = load_file(str(FIXTURES / "golden_sampling.safetensors"))
    clip = torch.cat([data["in.clip"], torch.zeros_like(data["in.clip"])])
    got = karras_sample(lambda x, t: model(x, t, clip=clip), GaussianDiffusion("cosine"), (1, 6, 64), steps=3,
                        sigma_min=1e-3, sigma_max=120.0, s_churn=3.0, guidance_scale=3.0,
                        generator=torch.Generator().manual_seed(7))
    expected = data["out"]
    assert expected.std() > 0.1
    # compared in the diffusion's [-1, 1] channel space (xyz x 2, rgb / 127.5 - 1)
    assert (scale_channels(got) - scale_channels(expected)).abs().max() <= 1e-4
