"""Fixtures of the evaluate tests: an empty private torch hub cache, so no test sees real weights."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_torch_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    import torch

    old = torch.hub.get_dir()
    torch.hub.set_dir(str(home / "hub"))
    yield home
    torch.hub.set_dir(old)
