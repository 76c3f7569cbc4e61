"""Plot a GAN run's curves and its latest samples as one PNG (what the seed's training monitor shows).

    python -m train.plot_curves outputs/train_gan/dcgan-digits            # -> <run>/curves.png
    python -m train.plot_curves RUN_DIR --out curves.png --smooth 20

Reads the run folder train_gan.py writes: log.jsonl (losses and other per-step scalars), metrics.jsonl
(FID / IS from `--metrics`) and the newest samples/step_*.png. Panels: the D and G losses (moving average
over `--smooth` steps), FID, IS (when scored), each other scalar the recipe logs, and the sample grid.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

LOSSES = ("loss_d", "loss_g")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def moving_average(points: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    if window <= 1:
        return points
    out, total = [], 0.0
    for i, (step, v) in enumerate(points):
        total += v
        if i >= window:
            total -= points[i - window][1]
        out.append((step, total / min(i + 1, window)))
    return out


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]


def plot_run(run: Path, out: Path | None = None, smooth: int = 10, extra_panels: int = 4) -> Path:
    from PIL import Image

    from utils.visualization.curves import compose, draw_panel

    if not run.is_dir():
        raise UserError(f"run folder not found: {run}: pass the --out folder of a train_gan.py run")
    log, metrics = read_jsonl(run / "log.jsonl"), read_jsonl(run / "metrics.jsonl")
    if not log and not metrics:
        raise UserError(f"{run} has no log.jsonl or metrics.jsonl: it is not a train_gan.py run folder (or it has "
                        "not logged a step yet)")
    panels = [draw_panel(f"losses (avg {smooth})", {k: moving_average(series(log, k), smooth) for k in LOSSES
                                                    if series(log, k)})]
    if series(metrics, "fid"):
        panels.append(draw_panel("FID", {"fid": series(metrics, "fid")}))
    if series(metrics, "is"):
        panels.append(draw_panel("Inception score", {"is": series(metrics, "is")}))
    others = sorted({k for r in log for k, v in r.items() if k not in (*LOSSES, "step") and isinstance(v, (int, float))})
    for key in others[:extra_panels]:
        panels.append(draw_panel(f"{key} (avg {smooth})", {key: moving_average(series(log, key), smooth)}))
    samples = sorted((run / "samples").glob("step_*.png")) if (run / "samples").is_dir() else []
    grid = Image.open(samples[-1]).convert("RGB") if samples else None
    sheet = compose(panels, columns=2, extra=grid)
    target = out or run / "curves.png"
    from utils.io import atomic_path

    with atomic_path(target) as tmp:  # a killed or failed write leaves no half a PNG
        sheet.save(tmp)
    return target


def main(argv: list[str] | None = None) -> None:
    with cli_errors("plot_curves"):
        p = ArgumentParser(prog="python -m train.plot_curves", description="Plot a GAN run's curves as one PNG.")
        p.add_argument("run", help="the run folder (train_gan.py's --out)")
        p.add_argument("--out", default=None, help="the PNG to write (default: <run>/curves.png)")
        p.add_argument("--smooth", type=int, default=10, help="moving-average window of the loss curves (steps)")
        args = p.parse_args(argv)
        if args.smooth < 1:
            raise UserError(f"--smooth must be at least 1, got {args.smooth}")
        print(plot_run(Path(args.run), Path(args.out) if args.out else None, args.smooth))


if __name__ == "__main__":
    main()
