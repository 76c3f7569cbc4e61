"""benchmarks/web.py at its toy size: /generate timed at 1, 4 and 16 clients against a live server."""
from __future__ import annotations

import math

import pytest

from benchmarks import web
from tests.helpers.live_server import live_server


def _check(r: dict, out: str) -> None:
    assert sorted(r["levels"]) == [1, 4, 16]
    for clients, row in r["levels"].items():
        assert row["clients"] == clients and row["errors"] == 0
        assert row["requests"] == clients * max(1, -(-4 // clients))  # 4 requests a level, at least 1 a client
        assert row["requests_per_s"] > 0 and math.isfinite(row["requests_per_s"])
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert f"| {clients} | {row['requests']} | {row['requests_per_s']:.1f} |" in out


def test_toy_run_against_a_live_server(tmp_path, capsys):
    from inference.web.settings import ServerSettings

    with live_server(ServerSettings(models=("dcgan",), output_dir=tmp_path, queue=32)) as url:
        r = web.main(["--toy", "--url", url])
    _check(r, capsys.readouterr().out)


@pytest.mark.slow
def test_toy_run_starts_the_demo_server_itself(capsys):
    r = web.main(["--toy"])
    _check(r, capsys.readouterr().out)
