"""Deployment: the Dockerfile's entry point and health check work against the real app, CVG_* settings,
the command line's defaults (127.0.0.1) and its warning for a reachable host."""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> str:
    """One Dockerfile instruction with its continuation lines joined, as Docker reads it."""
    joined = re.sub(r"\\\n", "", DOCKERFILE)
    return next(line for line in joined.splitlines() if line.startswith(name + " "))


def test_the_image_serves_the_env_configured_factory_with_uvicorn():
    import importlib
    import json

    cmd = json.loads(_instruction("CMD")[len("CMD "):])
    assert cmd[:3] == ["uvicorn", "--factory", "inference.web.app:app_from_env"]
    module, _, name = cmd[2].partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    assert "7860" in cmd and "EXPOSE 7860" in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "outputs", "tests"} <= set(ignored)


def _healthcheck(url: str, token: str | None) -> subprocess.CompletedProcess:
    code = _instruction("HEALTHCHECK").split('CMD python -c "', 1)[1].rstrip('"')
    code = code.replace("http://127.0.0.1:7860", url)
    env = {"PATH": "/usr/bin:/bin", **({"CVG_API_TOKEN": token} if token else {})}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_the_health_check_passes_with_the_token_and_fails_without(live, settings):
    with live(replace(settings, token="tok")) as url:
        assert _healthcheck(url, "tok").returncode == 0
        assert _healthcheck(url, None).returncode != 0  # 401
    with live(settings) as url:
        assert _healthcheck(url, None).returncode == 0


def test_settings_from_the_environment():
    from inference.web.app import settings_from_env
    from utils.errors import UserError

    s = settings_from_env({"CVG_MODELS": "dcgan, flux", "CVG_QUEUE": "3", "CVG_MAX_IMAGES": "4", "CVG_TIMEOUT": "9.5",
                           "CVG_DEVICE": "cpu"})
    assert s.models == ("dcgan", "flux") and s.queue == 3 and s.device == "cpu"
    assert s.limits.max_images == 4 and s.limits.timeout_s == 9.5 and s.host == "127.0.0.1"
    with pytest.raises(UserError, match=r"\$CVG_QUEUE='many' is not a int"):
        settings_from_env({"CVG_QUEUE": "many"})


def test_the_command_line_binds_localhost_and_warns_for_a_reachable_host(monkeypatch, capsys):
    from inference.web import app
    from inference.web.cli import settings_from
    from inference.web_demo import build_parser

    args = build_parser().parse_args([])
    assert settings_from(args).host == "127.0.0.1" and app.host_warning("127.0.0.1") is None
    served = []

    class FakeApp:  # what serve() reads of the app; uvicorn.run is stubbed, nothing listens
        class state:
            class service:
                class catalog:
                    infos: dict = {}

    monkeypatch.setattr(app, "create_app", lambda s: served.append(s) or FakeApp)
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: served.append(k))
    app.serve(settings_from(build_parser().parse_args(["--host", "0.0.0.0", "--port", "8123"])))
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0" in err and "--token" in err
    assert served[0].host == "0.0.0.0" and served[1]["host"] == "0.0.0.0" and served[1]["port"] == 8123


@pytest.mark.parametrize("argv, message", [
    (["--models", "no_such"], "unknown model 'no_such'"),
    (["--port", "70000"], "--port 70000 is not a TCP port"),
    (["--queue", "-1"], "--queue must be at least 0"),
    (["--study-a", "dcgan"], "give both A and B"),
])
def test_demo_mistakes_are_one_line_exit_2(argv, message, capsys, monkeypatch):
    from inference.web_demo import main

    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
