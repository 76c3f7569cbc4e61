"""A pairwise A/B user study: serve it in the browser, then report who won.

    python evaluate/user_study.py serve --a dcgan --b vanilla_gan --prompts prompts.txt [--db study.db]
    python evaluate/user_study.py serve --a "dcgan:digits" --b "dcgan:digits,truncation=0.5"
    python evaluate/user_study.py report study.db [--out outputs/user_study]

`serve` shows the same prompts and seeds through two systems (a model with its settings:
'model[:preset][,key=value...]'), side by side in random order, and stores every vote in SQLite
(WAL mode, one transaction per vote). `report` prints, for every pair of systems compared in the
file, the win rate with its Wilson confidence interval, and the Bradley-Terry strength of every
system across all pairs; it writes user_study.csv and user_study.png (a bar chart) to --out.
"""
from __future__ import annotations

import csv
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser  # noqa: E402
from utils.errors import UserError, cli_errors  # noqa: E402

# -- statistics ---------------------------------------------------------------------------------------

def wilson(wins: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a win rate `wins / n` (Wilson 1927): it stays inside [0, 1] and keeps
    its coverage for small n and rates near 0 or 1, where the normal approximation fails."""
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = wins / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bradley_terry(outcomes: list[tuple[str, str]], prior: float = 0.1, iterations: int = 10_000,
                  tol: float = 1e-12) -> dict[str, float]:
    """Bradley-Terry strengths from (winner, loser) pairs, by Hunter's (2004) MM iterations.

    P(i beats j) = p_i / (p_i + p_j). `prior` adds that many virtual wins each way to every pair that
    met, so a system that never won keeps a finite, positive strength. Strengths sum to 1.
    """
    systems = sorted({s for pair in outcomes for s in pair})
    if not systems:
        return {}
    idx = {s: k for k, s in enumerate(systems)}
    n = len(systems)
    wins = [[0.0] * n for _ in range(n)]
    for w, l in outcomes:
        wins[idx[w]][idx[l]] += 1
    for i in range(n):
        for j in range(n):
            if i != j and (wins[i][j] or wins[j][i]):
                wins[i][j] += prior
    games = [[wins[i][j] + wins[j][i] for j in range(n)] for i in range(n)]
    total = [sum(row) for row in wins]
    p = [1.0 / n] * n
    for _ in range(iterations):
        new = []
        for i in range(n):
            denom = sum(games[i][j] / (p[i] + p[j]) for j in range(n) if j != i and games[i][j])
            new.append(total[i] / denom if denom else p[i])
        s = sum(new)
        new = [x / s for x in new]
        done = max(abs(a - b) for a, b in zip(new, p)) < tol
        p = new
        if done:
            break
    return {s: p[idx[s]] for s in systems}


@dataclass(frozen=True)
class PairRow:
    """Two systems compared head to head (ties are counted but not in the win rate)."""

    a: str
    b: str
    a_wins: int
    b_wins: int
    ties: int
    ci: tuple[float, float]

    @property
    def decided(self) -> int:
        return self.a_wins + self.b_wins

    @property
    def a_rate(self) -> float:
        return self.a_wins / self.decided if self.decided else float("nan")


@dataclass(frozen=True)
class SystemRow:
    """One system across all its comparisons."""

    name: str
    strength: float
    wins: int
    losses: int
    ties: int
    ci: tuple[float, float]

    @property
    def rate(self) -> float:
        return self.wins / (self.wins + self.losses) if self.wins + self.losses else float("nan")


def summarize(votes, confidence: float = 0.95) -> tuple[list[PairRow], list[SystemRow]]:
    """Pairwise rows (every pair of systems that met) and system rows, strongest first."""
    heads: Counter = Counter()
    ties: Counter = Counter()
    outcomes = []
    for v in votes:
        pair = tuple(sorted((v.left, v.right)))
        if v.winner is None:
            ties[pair] += 1
        else:
            heads[(v.winner, v.loser)] += 1
            outcomes.append((v.winner, v.loser))
    pairs = sorted({tuple(sorted(k)) for k in heads} | set(ties))
    pair_rows = []
    for a, b in pairs:
        aw, bw = heads[(a, b)], heads[(b, a)]
        pair_rows.append(PairRow(a, b, aw, bw, ties[(a, b)], wilson(aw, aw + bw, confidence)))
    strength = bradley_terry(outcomes)
    names = sorted({s for p in pairs for s in p}, key=lambda s: -strength.get(s, 0.0))
    rows = []
    for s in names:
        w = sum(c for (win, _), c in heads.items() if win == s)
        lo = sum(c for (_, los), c in heads.items() if los == s)
        t = sum(c for p, c in ties.items() if s in p)
        rows.append(SystemRow(s, strength.get(s, float("nan")), w, lo, t, wilson(w, w + lo, confidence)))
    return pair_rows, rows


# -- outputs ------------------------------------------------------------------------------------------

def write_csv(path: Path, pairs: list[PairRow], systems: list[SystemRow]) -> Path:
    from utils.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["kind", "system", "opponent", "wins", "losses", "ties", "win_rate", "ci_low", "ci_high",
                          "bradley_terry"])
            for s in systems:
                out.writerow(["system", s.name, "all", s.wins, s.losses, s.ties, f"{s.rate:.4f}", f"{s.ci[0]:.4f}",
                              f"{s.ci[1]:.4f}", f"{s.strength:.6f}"])
            for p in pairs:
                out.writerow(["pair", p.a, p.b, p.a_wins, p.b_wins, p.ties, f"{p.a_rate:.4f}", f"{p.ci[0]:.4f}",
                              f"{p.ci[1]:.4f}", ""])
    return path


def bar_chart(path: Path, systems: list[SystemRow], confidence: float) -> Path:
    """Each system's win rate (bar) with its Wilson interval (whisker) and Bradley-Terry strength (label)."""
    from PIL import Image, ImageDraw

    from utils.io import atomic_path

    bar_w, gap, top, bottom, left = 70, 40, 40, 70, 50
    width = left + len(systems) * (bar_w + gap) + gap
    height = 360
    img = Image.new("RGB", (max(width, 320), height), "white")
    d = ImageDraw.Draw(img)
    plot_h = height - top - bottom
    y_of = (lambda v: top + plot_h * (1 - v))
    d.line([(left, top), (left, top + plot_h), (img.width - 10, top + plot_h)], fill="black")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        d.line([(left - 4, y), (left, y)], fill="black")
        d.text((5, y - 6), f"{tick:.2f}", fill="black")
    d.text((left, 8), f"win rate with {confidence:.0%} Wilson interval; BT = Bradley-Terry strength", fill="black")
    for k, s in enumerate(systems):
        x0 = left + gap + k * (bar_w + gap)
        rate = 0.0 if math.isnan(s.rate) else s.rate
        d.rectangle([x0, y_of(rate), x0 + bar_w, y_of(0)], fill=(70, 110, 180))
        cx = x0 + bar_w // 2
        d.line([(cx, y_of(s.ci[1])), (cx, y_of(s.ci[0]))], fill="black", width=2)
        for v in s.ci:
            d.line([(cx - 8, y_of(v)), (cx + 8, y_of(v))], fill="black", width=2)
        d.text((x0, top + plot_h + 8), s.name[:14], fill="black")
        d.text((x0, top + plot_h + 24), f"BT {s.strength:.3f}", fill="black")
        d.text((x0, top + plot_h + 40), f"n={s.wins + s.losses}", fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp)
    return path


def report(db: Path, out: Path, study: str | None = None, confidence: float = 0.95) -> dict:
    """Print the tables for the votes in `db`, write the CSV and the chart; returns the figures."""
    from inference.web.votes import VoteStore

    if not 0 < confidence < 1:
        raise UserError(f"--confidence must lie in (0, 1), got {confidence}")
    votes = VoteStore(db, create=False).votes(study)
    if not votes:
        raise UserError(f"{db} holds no votes{f' for study {study!r}' if study else ''}: run the study first")
    pairs, systems = summarize(votes, confidence)
    tie_count = sum(p.ties for p in pairs)
    print(f"{db}: {len(votes)} votes ({tie_count} ties)" + (f" in study '{study}'" if study else ""))
    pct = f"{confidence:.0%}"
    print(f"\n| A | B | A wins | B wins | ties | A win rate | {pct} CI |\n|---|---|---|---|---|---|---|")
    for p in pairs:
        print(f"| {p.a} | {p.b} | {p.a_wins} | {p.b_wins} | {p.ties} | {p.a_rate:.3f} | "
              f"[{p.ci[0]:.3f}, {p.ci[1]:.3f}] |")
    print(f"\n| rank | system | Bradley-Terry | wins | losses | ties | win rate | {pct} CI |\n"
          "|---|---|---|---|---|---|---|---|")
    for k, s in enumerate(systems, 1):
        print(f"| {k} | {s.name} | {s.strength:.4f} | {s.wins} | {s.losses} | {s.ties} | {s.rate:.3f} | "
              f"[{s.ci[0]:.3f}, {s.ci[1]:.3f}] |")
    csv_path = write_csv(out / "user_study.csv", pairs, systems)
    png_path = bar_chart(out / "user_study.png", systems, confidence)
    print(f"\nwrote {csv_path} and {png_path}")
    return {"votes": len(votes), "pairs": pairs, "systems": systems, "csv": csv_path, "png": png_path}


# -- command line -------------------------------------------------------------------------------------

def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="user_study.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the A/B study in the browser",
                       formatter_class=p.formatter_class)
    from inference.web.cli import add_server_args, add_study_args

    add_study_args(s.add_argument_group("study"))
    add_server_args(s)
    r = sub.add_parser("report", help="win rates, Wilson intervals and Bradley-Terry scores of a study database",
                       formatter_class=p.formatter_class)
    r.add_argument("db", help="the SQLite file the study wrote")
    r.add_argument("--study", default=None, help="only this study's votes (default: every study in the file)")
    r.add_argument("--out", default=None, help="folder for user_study.csv and user_study.png "
                                               "(default: outputs/user_study)")
    r.add_argument("--confidence", type=float, default=0.95, help="confidence level of the Wilson intervals")
    return p


def main(argv: list[str] | None = None) -> dict | None:
    with cli_errors("user_study.py"):
        args = build_parser().parse_args(argv)
        if args.command == "report":
            return report(Path(args.db), Path(args.out or "outputs/user_study"), args.study, args.confidence)
        from inference.web.app import serve
        from inference.web.cli import settings_from, study_from

        if not args.a or not args.b:
            raise UserError("serve needs both --a and --b (model[:preset][,key=value...])")
        study = study_from(args.a, args.b, args.prompts, args.seeds, args.db, args.name)
        serve(settings_from(args, study=study, tabs=("study",)))
        return None


if __name__ == "__main__":
    main()
