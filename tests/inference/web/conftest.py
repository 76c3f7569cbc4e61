"""Live servers for the web tests: the real app under uvicorn on 127.0.0.1 (a free port), and Debian's
headless Chromium driven by playwright (the system browser: nothing is downloaded)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers.live_server import live_server

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def chromium_path() -> str:
    """The system Chromium (.ci/run installs Debian's `chromium`)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium on PATH: install Debian's package (apt-get install -y chromium), as .ci/run does")


@pytest.fixture
def settings(tmp_path):
    """Server settings for a test: the digits DCGAN (and its tiny preset), files in tmp_path."""
    from inference.web.settings import ServerSettings

    return ServerSettings(models=("dcgan",), output_dir=tmp_path / "files")


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("web")


@pytest.fixture
def registered(monkeypatch):
    """`registered(*specs)`: add stand-in models to the registry for one test (as a new package would)."""
    import models
    from models import registry

    def add(*specs):
        monkeypatch.setattr(registry, "MODELS", registry.MODELS + tuple(specs))
        monkeypatch.setattr(models, "MODELS", registry.MODELS)
        models.clear_cache()

    yield add
    models.clear_cache()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def live():
    """The `live_server(settings)` context manager, for tests and module fixtures with their own settings."""
    return live_server
