"""The server's command-line options, shared by inference/web_demo.py and evaluate/user_study.py serve."""
from __future__ import annotations

import argparse
from pathlib import Path

from inference.web.settings import (
    LOCALHOST,
    TOKEN_ENV,
    Limits,
    ServerSettings,
    StudySettings,
)
from utils.errors import UserError


def add_server_args(p: argparse.ArgumentParser, study: bool = False) -> None:
    d, lim = ServerSettings(), Limits()
    g = p.add_argument_group("server")
    g.add_argument("--host", default=LOCALHOST, help="address to bind; 0.0.0.0 reaches beyond this machine "
                                                    "(then set --token)")
    g.add_argument("--port", type=int, default=d.port, help="TCP port")
    g.add_argument("--token", default=None, help=f"API token every request must carry (default: ${TOKEN_ENV})")
    g.add_argument("--models", default="", help="comma-separated registry names to serve (default: all)")
    g.add_argument("--default-model", default=d.default_model, help="the model a page opens with")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    g.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: the model's for the device)")
    g.add_argument("--output-dir", default=str(d.output_dir), help="where results asked for as URLs are written")
    q = p.add_argument_group("limits")
    q.add_argument("--concurrency", type=int, default=d.concurrency, help="calls of one model running at once")
    q.add_argument("--queue", type=int, default=d.queue, help="requests of one model waiting; beyond: 503")
    q.add_argument("--timeout", type=float, default=lim.timeout_s, help="seconds a request may wait and run")
    q.add_argument("--max-images", type=int, default=lim.max_images, help="images per request")
    q.add_argument("--max-size", type=int, default=lim.max_size, help="largest height or width")
    q.add_argument("--max-steps", type=int, default=lim.max_steps, help="most sampling steps")
    q.add_argument("--max-work", type=int, default=lim.max_work, help="cap on images x height x width x steps")
    q.add_argument("--max-frames", type=int, default=lim.max_frames, help="most interpolation frames or views")
    q.add_argument("--max-body", type=int, default=lim.max_body_bytes, help="largest request body in bytes")
    if study:
        s = p.add_argument_group("user study tab (both --study-a and --study-b to show it)")
        add_study_args(s, prefix="study-")


def add_study_args(g: argparse._ActionsContainer, prefix: str = "") -> None:
    g.add_argument(f"--{prefix}a", default=None, help="system A: model[:preset][,key=value...]")
    g.add_argument(f"--{prefix}b", default=None, help="system B, in the same form")
    g.add_argument(f"--{prefix}prompts", default=None, help="text file, one prompt (or class name) per line")
    g.add_argument(f"--{prefix}seeds", type=int, default=8, help="seeds 0..N-1 shown with every prompt")
    g.add_argument(f"--{prefix}db", default="outputs/user_study/study.db", help="SQLite file the votes go to")
    g.add_argument(f"--{prefix}name", default="study", help="the study's name in the database")


def study_from(a: str | None, b: str | None, prompts: str | None, seeds: int, db: str,
               name: str) -> StudySettings | None:
    if a is None and b is None:
        return None
    if not a or not b:
        raise UserError("a study compares two systems: give both A and B")
    lines: tuple[str, ...] = ()
    if prompts:
        path = Path(prompts)
        if not path.is_file():
            raise UserError(f"prompts file not found: {path}")
        lines = tuple(ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip())
        if not lines:
            raise UserError(f"{path} holds no prompts: write one per line")
    if seeds < 1:
        raise UserError("the number of seeds must be at least 1")
    return StudySettings(a=a, b=b, db=Path(db), prompts=lines, seeds=tuple(range(seeds)), name=name)


def settings_from(args: argparse.Namespace, study: StudySettings | None = None,
                  tabs: tuple[str, ...] = ()) -> ServerSettings:
    if not 0 <= args.port < 65536:
        raise UserError(f"--port {args.port} is not a TCP port (0-65535)")
    for name in ("concurrency", "max_images", "max_size", "max_steps", "max_work", "max_frames", "max_body"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.queue < 0 or args.timeout <= 0:
        raise UserError("--queue must be at least 0 and --timeout positive")
    if study is None and hasattr(args, "study_a"):
        study = study_from(args.study_a, args.study_b, args.study_prompts, args.study_seeds, args.study_db,
                           args.study_name)
    limits = Limits(max_images=args.max_images, max_size=args.max_size, max_steps=args.max_steps,
                    max_work=args.max_work, max_frames=args.max_frames, max_body_bytes=args.max_body,
                    timeout_s=args.timeout)
    names = tuple(n.strip() for n in args.models.split(",") if n.strip())
    return ServerSettings(host=args.host, port=args.port, models=names, default_model=args.default_model,
                          device=args.device, dtype=args.dtype, token=args.token, concurrency=args.concurrency,
                          queue=args.queue, limits=limits, output_dir=Path(args.output_dir), study=study, tabs=tabs)
