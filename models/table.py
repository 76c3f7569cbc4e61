"""The model table of the README, generated from the registry so it never drifts."""
from __future__ import annotations

from pathlib import Path

from models.registry import MODELS, ModelSpec

START, END = "<!-- models:start -->", "<!-- models:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def _weights(spec: ModelSpec) -> str:
    if not spec.weights:
        return "random (`tiny`) or `--weights`"
    cells = []
    for w in spec.weights:
        where = w.source.removeprefix("package:") if w.source.startswith("package:") else f"`{w.source}`"
        gated = ", gated" if w.gated else ""
        cells.append(f"{w.preset}: {where} ({w.licence}{gated})")
    return "<br>".join(cells)


def markdown_table() -> str:
    rows = ["| modality | model | presets | weights (licence) | what it is |", "|---|---|---|---|---|"]
    for s in MODELS:
        readme = s.readme.as_posix()
        rows.append(f"| {s.modality} | [{s.name}]({readme}) | {', '.join(s.presets)} | {_weights(s)} | {s.summary} |")
    return "\n".join(rows)


def readme_block() -> str:
    return f"{START}\n{markdown_table()}\n{END}"


def update_readme(path: Path = README) -> bool:
    """Rewrite the generated block of the README; True when it changed."""
    text = path.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    new = f"{head}{readme_block()}{tail}"
    if new != text:
        path.write_text(new)
    return new != text
