"""The README's model table is the registry's, and its quickstart names real commands."""
from __future__ import annotations

from pathlib import Path

from models.table import END, START, readme_block

ROOT = Path(__file__).resolve().parents[1]


def test_model_table_is_generated_from_the_registry():
    text = (ROOT / "README.md").read_text()
    block = text[text.index(START):text.index(END) + len(END)]
    assert block == readme_block(), "run `python -m models readme` after changing the registry"


def test_quickstart_is_two_commands_that_ci_runs():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert quick == ['pip install -e ".[dev]" && python inference/generate_image.py', "python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[dev]"' in ci and "python -m pytest" in ci and "generate_image.py" in ci
