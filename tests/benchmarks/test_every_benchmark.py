"""Every benchmark has a toy size and a test that runs it, so the code behind README figures cannot rot."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_has_a_toy_mode_and_a_test():
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")
    assert names, "no benchmarks found"
    for name in names:
        assert '"--toy"' in (ROOT / "benchmarks" / f"{name}.py").read_text(), f"benchmarks/{name}.py has no --toy"
        test = Path(__file__).with_name(f"test_{name}.py")
        assert test.is_file() and f'main(["--toy"' in test.read_text(), f"no toy-size test for benchmarks/{name}.py"
