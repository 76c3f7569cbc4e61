"""Frame consistency of videos: CLIP similarity of consecutive frames (utils/metrics/frame_consistency.py
says exactly what is computed).

    python evaluate/frame_consistency.py clips/                       # every video in the folder
    python evaluate/frame_consistency.py clip.mp4 --model ViT-L-14 --pretrained openai --per-video scores.csv

Videos are .mp4 .webm .mov .mkv .avi .gif .webp files or folders of frames; the model is an open_clip
name with a pretrained tag or checkpoint, or an open_clip model folder (as evaluate/clip_score.py).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="frame_consistency", description="Mean CLIP cosine similarity (x100) of consecutive "
                       "frames.", epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", help="video files, frame folders, or one folder of videos")
    p.add_argument("--model", default="ViT-B-32", help="open_clip model name, or an open_clip model folder")
    p.add_argument("--pretrained", default="openai", help="pretrained tag or checkpoint file of the model name")
    p.add_argument("--max-frames", type=int, default=None, help="use at most the first N frames of each video")
    p.add_argument("--per-video", metavar="OUT.csv", default=None, help="also write file,score per video")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    with cli_errors("frame_consistency"):
        args = build_parser().parse_args(argv)
        from utils.data.video import frames_to_pil, is_video_source, read_video
        from utils.metrics.clip_score import CLIPScorer
        from utils.metrics.frame_consistency import frame_consistency
        from utils.metrics.fvd import list_videos

        paths: list[Path] = []
        for v in args.videos:
            p = Path(v)
            if not p.exists():
                raise UserError(f"{p} not found: give video files, frame folders or a folder of videos")
            paths += [p] if p.is_file() or is_video_source(p) else list_videos(p)
        scorer = CLIPScorer(args.model, args.pretrained, args.device)
        videos = [frames_to_pil(read_video(p).frames[:args.max_frames]) for p in paths]
        mean, per = frame_consistency(videos, scorer)
        if args.per_video:
            from utils.io import atomic_path

            with atomic_path(args.per_video) as tmp:
                tmp.write_text("file,score\n" + "".join(f"{p},{s:.4f}\n" for p, s in zip(paths, per)))
        print(f"frame consistency ({len(paths)} video(s), {args.model}): {mean:.4f}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
