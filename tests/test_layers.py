"""The layering of the house (pyproject.toml [tool.importlinter]): it holds for the tree, and it bites."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([*LINT, "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_every_contract():
    res = _lint(REPO, REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(_statuses(res.stdout).values()) == {"KEPT"} and len(_statuses(res.stdout)) == 4


def _toy_tree(root: Path, extra: dict[str, str]) -> None:
    """The six root packages and the four modalities, empty but for `extra` (path -> source)."""
    packages = ["models", "utils", "train", "inference", "evaluate", "benchmarks", "models/image_generation",
                "models/gan", "models/video_generation", "models/generation_3d"]
    for pkg in packages:
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    for script in ("train/train_gan.py", "train/train_3d.py", "evaluate/fid_score.py", "inference/generate_image.py",
                   "benchmarks/flux.py", "utils/blocks.py", "models/image_generation/unet.py"):
        (root / script).write_text("")
    for path, source in extra.items():
        (root / path).write_text(source)


@pytest.mark.parametrize("path, source, contract", [
    ("utils/bad.py", "import train.train_gan\n", "never import the scripts"),
    ("models/gan/bad.py", "from evaluate import fid_score\n", "never import the scripts"),
    ("utils/bad.py", "import models.image_generation.unet\n", "utils/ knows no model"),
    ("evaluate/inception_score.py", "from evaluate.fid_score import *\n", "a script imports no other script"),
    ("models/gan/bad.py", "import models.image_generation.unet\n", "modality packages do not import each other"),
    ("models/image_generation/bad.py", "import models.video_generation\n", "modality packages do not import"),
])
def test_a_wrong_import_breaks_its_contract(tmp_path, path, source, contract):
    _toy_tree(tmp_path, {path: source})
    res = _lint(tmp_path, tmp_path)
    assert res.returncode != 0
    assert _statuses(res.stdout) == {name: ("BROKEN" if contract in name else "KEPT")
                                     for name in _statuses(res.stdout)}, res.stdout


def _statuses(stdout: str) -> dict[str, str]:
    """Contract name -> KEPT / BROKEN, from lint-imports' summary (names may wrap over lines)."""
    summary = " ".join(stdout.split("Contracts", 1)[1].split("Contracts:")[0].split())
    parts = re.split(r"\b(KEPT|BROKEN)\b", summary.split("-------------------------------------")[-1])
    return {parts[i].strip(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}


def test_video_may_import_image(tmp_path):
    _toy_tree(tmp_path, {"models/video_generation/svd.py": "import models.image_generation.unet\n"})
    res = _lint(tmp_path, tmp_path)
    assert res.returncode == 0, res.stdout
