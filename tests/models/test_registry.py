"""The registry and the facade: lookups, close matches, caching, the list command, import time."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import models
from models.registry import MODELS, find_spec, get_spec
from utils.errors import UserError


def test_every_spec_is_well_formed():
    seen = set()
    for spec in MODELS:
        assert spec.modality in models.MODALITIES
        assert (spec.modality, spec.name) not in seen
        seen.add((spec.modality, spec.name))
        assert spec.default_preset in spec.presets
        assert "tiny" in spec.presets, f"{spec.name} needs a tiny preset for tests"
        for w in spec.weights:
            assert w.preset in spec.presets and w.licence
        module, _, cls = spec.pipeline.partition(":")
        assert module.startswith("models.") and cls


def test_unknown_model_names_close_matches():
    with pytest.raises(UserError, match="did you mean: dcgan"):
        get_spec("gan", "dcgn")
    with pytest.raises(UserError, match="did you mean: vanilla_gan"):
        find_spec("vanila_gan", ("image", "gan"))


def test_wrong_modality_says_which():
    with pytest.raises(UserError, match="is a gan model"):
        get_spec("image", "dcgan")
    with pytest.raises(UserError, match="unknown modality"):
        models.available("audio")


def test_available_lists_the_first_models():
    assert {"dcgan", "vanilla_gan"} <= set(models.available("gan"))
    assert "gan/dcgan" in models.available()


def test_generate_tiny_and_cache():
    out = models.generate("gan", "dcgan", preset="tiny", seed=3, num_images=2)
    assert len(out.images) == 2 and out.images[0].size == (16, 16)
    assert models.load("gan", "dcgan", preset="tiny") is models.load("gan", "dcgan", preset="tiny")
    with pytest.raises(UserError, match="no preset 'huge'"):
        models.load("gan", "dcgan", preset="huge")


def test_list_json_lists_presets_and_weights():
    res = subprocess.run([sys.executable, "-m", "models", "list", "--json"], capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    for name in ("dcgan", "vanilla_gan"):
        row = rows[name]
        assert row["modality"] == "gan" and row["summary"]
        assert "digits" in row["presets"] and "tiny" in row["presets"]
        assert row["weights"][0]["licence"] and row["weights"][0]["source"].endswith(".safetensors")


def test_import_models_is_fast_and_lazy():
    code = ("import time, sys; t = time.perf_counter(); import models; dt = time.perf_counter() - t; "
            "print(dt, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt, torch_loaded = res.stdout.split()
    assert float(dt) < 1.0
    assert torch_loaded == "False", "import models must not import torch"
