"""Test-wide settings: never touch the network, small thread counts, private hub and torch hub caches."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _private_hub_cache(tmp_path_factory, monkeypatch):
    """Each test sees an empty hub cache of its own unless it fills one."""
    cache = tmp_path_factory.mktemp("hf_cache")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache.parent / "hf_home"))
    yield


@pytest.fixture
def seed():
    torch.manual_seed(0)
    return 0


@pytest.fixture(autouse=True)
def _private_torch_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(home / "hub"))
    yield home
    torch.hub.set_dir(old)
