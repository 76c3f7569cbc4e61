"""evaluate/user_study.py: the statistics on votes of a known preference, the vote store's durability, the CLI."""
from __future__ import annotations

import csv
import math
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from inference.web.votes import Vote, VoteStore
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "evaluate" / "user_study.py"


@pytest.fixture(scope="module")
def study():
    """The script's functions (statistics, report, main), in this process."""
    import evaluate.user_study

    return evaluate.user_study


STRENGTH = {"A": 4.0, "B": 2.0, "C": 1.0}


def synthetic_votes(n_per_pair: int, rng: random.Random, strength=STRENGTH) -> list[Vote]:
    """Votes drawn from a Bradley-Terry model with known strengths; sides at random, a few ties."""
    votes = []
    names = sorted(strength)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for k in range(n_per_pair):
                left, right = (a, b) if rng.random() < 0.5 else (b, a)
                if rng.random() < 0.05:
                    choice = "tie"
                else:
                    left_wins = rng.random() < strength[left] / (strength[left] + strength[right])
                    choice = "left" if left_wins else "right"
                votes.append(Vote("synthetic", None, k, left, right, choice))
    return votes


def test_wilson_matches_the_published_interval(study):
    lo, hi = study.wilson(8, 10)  # statsmodels proportion_confint(8, 10, method="wilson"): (0.4902, 0.9433)
    assert abs(lo - 0.4902) < 1e-4 and abs(hi - 0.9433) < 1e-4
    lo, hi = study.wilson(0, 10)
    assert lo < 1e-12 and 0 < hi < 0.3  # stays inside [0, 1] where the normal interval would not
    assert study.wilson(0, 0) == (0.0, 1.0)
    assert study.wilson(50, 100, 0.99)[1] - study.wilson(50, 100, 0.99)[0] > \
        study.wilson(50, 100, 0.95)[1] - study.wilson(50, 100, 0.95)[0]


def test_bradley_terry_recovers_the_order_and_the_ci_covers_the_true_win_rate(study):
    pairs, systems = study.summarize(synthetic_votes(400, random.Random(0)))
    assert [s.name for s in systems] == ["A", "B", "C"]
    bt = {s.name: s.strength for s in systems}
    assert abs(sum(bt.values()) - 1) < 1e-9
    assert 1.6 < bt["A"] / bt["B"] < 2.5 and 1.6 < bt["B"] / bt["C"] < 2.5  # true ratios: 2 and 2
    for p in pairs:
        true = STRENGTH[p.a] / (STRENGTH[p.a] + STRENGTH[p.b])
        assert p.ci[0] <= true <= p.ci[1], (p, true)
        assert p.ties > 0 and p.decided + p.ties == 400


def test_the_wilson_interval_covers_the_true_rate_about_95_percent_of_the_time(study):
    rng = random.Random(1)
    true, n, trials = 2 / 3, 60, 400
    covered = 0
    for _ in range(trials):
        wins = sum(rng.random() < true for _ in range(n))
        lo, hi = study.wilson(wins, n)
        covered += lo <= true <= hi
    assert 0.91 <= covered / trials <= 0.99


def test_a_system_that_never_wins_keeps_a_finite_strength(study):
    bt = study.bradley_terry([("A", "B")] * 20)
    assert bt["A"] > bt["B"] > 0 and all(math.isfinite(v) for v in bt.values())


def test_votes_are_in_wal_mode_and_survive_a_killed_writer(tmp_path):
    db = tmp_path / "study.db"
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from inference.web.votes import Vote, VoteStore; "
            "s = VoteStore(sys.argv[1]); s.add(Vote('s', '3', 0, 'dcgan', 'wgan_gp', 'left')); "
            "s.add(Vote('s', '3', 1, 'wgan_gp', 'dcgan', 'right')); os.kill(os.getpid(), 9)")
    res = subprocess.run([sys.executable, "-c", code, str(db), str(ROOT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == -9, res.stderr  # killed, no clean close
    store = VoteStore(db)
    assert [v.winner for v in store.votes()] == ["dcgan", "dcgan"]
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(UserError, match="'left', 'right' or 'tie'"):
        store.add(Vote("s", None, 0, "a", "b", "up"))
    assert store.count() == 2


def test_report_prints_the_tables_and_writes_csv_and_chart(tmp_path):
    db = tmp_path / "study.db"
    store = VoteStore(db)
    for v in synthetic_votes(30, random.Random(2)):
        store.add(v)
    res = subprocess.run([sys.executable, str(SCRIPT), "report", str(db), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"{db}: 90 votes" in res.stdout and "| 1 | A |" in res.stdout and "Bradley-Terry" in res.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "user_study.csv")))
    assert [r["system"] for r in rows if r["kind"] == "system"] == ["A", "B", "C"]
    assert len([r for r in rows if r["kind"] == "pair"]) == 3
    chart = Image.open(tmp_path / "out" / "user_study.png")
    assert chart.size[0] >= 320 and len(set(chart.convert("L").getdata())) > 2


@pytest.mark.parametrize("argv, message", [
    (["report", "missing.db"], "no study database at missing.db"),
    (["report", "empty.db"], "holds no votes"),
    (["report", "not_sqlite.db"], "is not a study database"),
    (["serve", "--a", "dcgan"], "needs both --a and --b"),
    (["serve", "--a", "dcgan", "--b", "vanilla_gan", "--prompts", "nope.txt"], "prompts file not found"),
    (["serve", "--a", "dcgan,colour=red", "--b", "vanilla_gan", "--port", "1"], "'colour=red' is not key=value"),
    (["serve", "--a", "dcgan", "--b", "dcgan", "--port", "1"], "both sides of the study are 'dcgan'"),
])
def test_mistakes_are_one_line_and_exit_2(study, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    VoteStore(tmp_path / "empty.db")
    (tmp_path / "not_sqlite.db").write_text("hello")
    with pytest.raises(SystemExit) as exc:
        study.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_systems_and_trials(tmp_path):
    from inference.web.service import Service
    from inference.web.settings import ServerSettings, StudySettings
    from inference.web.study import Study, System

    s = System.parse("dcgan:digits,truncation=0.7")
    assert (s.model, s.preset, s.settings) == ("dcgan", "digits", {"truncation": 0.7})
    assert s.request("3", 5).truncation == 0.7 and s.request("3", 5).seed == 5
    with pytest.raises(UserError, match="truncation must be a float"):
        System.parse("dcgan,truncation=high")
    settings = StudySettings(a="dcgan", b="vanilla_gan", db=tmp_path / "s.db", prompts=("1", "2"), seeds=(0, 1, 2))
    st = Study(settings, Service(ServerSettings(models=("dcgan", "vanilla_gan"))))
    trials = [st.trial("session-1", k) for k in range(6)]
    assert sorted((t.prompt, t.seed) for t in trials) == sorted(st.cases)  # every case once per round
    assert {t.left.text for t in trials} == {"dcgan", "vanilla_gan"}  # both sides appear on the left
    import numpy as np

    import models

    t = trials[0]
    for shown, system in zip(st.images(t), (t.left, t.right)):  # each side is its system's image for the case
        want = models.generate("gan", system.model, prompt=t.prompt, seed=t.seed, num_images=1).images[0]
        assert np.array_equal(np.asarray(shown), np.asarray(want))
    st.vote(trials[0], "right", "session-1")
    assert st.count() == 1 and VoteStore(settings.db).votes()[0].winner == trials[0].right.text


def test_serve_runs_the_study_alone_on_the_demo_server(study, tmp_path, monkeypatch):
    """`serve` builds the app with only the study tab; the app it would run answers with that tab."""
    import httpx

    from inference.web import app
    from tests.helpers.live_server import live_server as live

    captured = []
    real = app.create_app
    monkeypatch.setattr(app, "create_app", lambda s: captured.append(s) or real(s))
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)
    (tmp_path / "prompts.txt").write_text("3\n\n5\n")
    study.main(["serve", "--a", "dcgan", "--b", "vanilla_gan", "--prompts", str(tmp_path / "prompts.txt"),
                "--seeds", "2", "--db", str(tmp_path / "s.db"), "--models", "dcgan,vanilla_gan"])
    (settings,) = captured
    assert settings.tabs == ("study",) and settings.study.prompts == ("3", "5") and settings.study.seeds == (0, 1)
    assert settings.host == "127.0.0.1"
    with live(settings) as url:
        config = httpx.get(url + "/config").text
    assert "tab-study" in config and "tab-generate" not in config and "tab-interpolate" not in config
