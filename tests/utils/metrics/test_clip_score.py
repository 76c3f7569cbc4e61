"""CLIP score: the stated formula through open_clip's own encoders; offline failure is one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from utils.metrics.clip_score import CLIPScorer, _open_clip_arguments
from utils.errors import UserError, WeightsError

import open_clip


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(0)
    return CLIPScorer("RN50", pretrained=None, device="cpu", batch_size=2)


@pytest.mark.slow  # a 224 px ResNet-50 CLIP on CPU
def test_score_is_clamped_scaled_cosine(scorer):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]
    texts = ["a red fox", "a photo of a cat", "digits"]
    got = scorer.scores(images, texts)
    with torch.no_grad():
        fi = scorer.model.encode_image(torch.stack([scorer.preprocess(im) for im in images]))
        ft = scorer.model.encode_text(scorer.tokenizer(texts))
    fi, ft = fi / fi.norm(dim=-1, keepdim=True), ft / ft.norm(dim=-1, keepdim=True)
    expected = 100 * (fi * ft).sum(-1).clamp_min(0)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert abs(scorer(images, texts) - float(expected.mean())) < 1e-4
    with pytest.raises(UserError):
        scorer.scores(images, texts[:2])


def test_offline_without_cache_is_one_line():
    with pytest.raises(WeightsError) as info:
        CLIPScorer("RN50", pretrained="openai")
    assert "\n" not in str(info.value) and "RN50/openai" in str(info.value)
    with pytest.raises(UserError):
        CLIPScorer("NoSuchNet")


def _cache_file(repo_id: str, filename: str, data: bytes) -> Path:
    """One file in huggingface_hub's cache layout (models--org--name/snapshots/<commit>/file)."""
    import os

    root = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    path = root / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_tag_resolves_through_the_hub_cache_with_its_preprocessing():
    cfg = open_clip.get_pretrained_cfg("RN50", "openai")
    repo = cfg["hf_hub"].rstrip("/")
    bin_file = _cache_file(repo, "open_clip_pytorch_model.bin", b"bin")
    name, kwargs = _open_clip_arguments("RN50", "openai")
    assert name == "RN50" and kwargs["pretrained"] == str(bin_file)
    # the OpenAI weights were trained with QuickGELU: the model must be built with it
    assert kwargs["force_quick_gelu"] is True
    assert tuple(kwargs["image_mean"]) == tuple(cfg["mean"]) and kwargs["image_interpolation"] == cfg["interpolation"]
    safe = _cache_file(repo, "open_clip_model.safetensors", b"st")  # safetensors first when both exist
    assert _open_clip_arguments("RN50", "openai")[1]["pretrained"] == str(safe)


def test_local_folder_and_bad_names():
    with pytest.raises(WeightsError, match="open_clip_config.json"):
        _open_clip_arguments(str(Path(__file__).parent), None)
    with pytest.raises(UserError, match="hf download"):
        _open_clip_arguments("hf-hub:org/repo", None)
    with pytest.raises(WeightsError, match="neither a file nor a pretrained tag of RN50"):
        _open_clip_arguments("RN50", "no-such-tag")
