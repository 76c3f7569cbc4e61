"""Camera motion of the luma_dream tiny camera proof, measured step by step: where the motion goes.

For the pans and tilts (and the orbits), the mean optical flow per frame (global Lucas-Kanade,
tests/models/video_generation/test_luma_camera_motion.py) along the asked axis, per preset, of:

- `rendered`: held-out clips rendered from the built-in scene (start poses of another seed);
- `vae round trip`: the same clips through the fitted tiny VAE and back: the fair reference, as sharp as a
  generated clip can be;
- `teacher forced s0, adapter / none`: the true latents noised to sigma s0, then denoised to 0 by the frozen
  transformer with the adapter (or without it) in `--tf-steps` plain Euler steps over even levels: how
  much of the motion already in the latents the base model keeps, and what the adapter adds;
- `from noise, camera_scale s`: `LTXVideoPipeline(camera=..., camera_scale=s)`, 20 steps, 3 seeds.

Ratios are to the VAE round trip. The run is either one already trained (`--run DIR` holding
base_vae.safetensors, base_transformer.safetensors, camera_adapter.safetensors, as the trainer writes them)
or the proof's recipe (`training.TINY_PROOF`, ~15 min on 2 CPU cores) trained into `--out`.

    python -m benchmarks.luma_camera --out /tmp/camera-run              # train the proof recipe, then measure
    python -m benchmarks.luma_camera --run /tmp/camera-run              # measure a trained run
    python -m benchmarks.luma_camera --toy --threads 1                  # seconds: a 2-step run, 16x16 clips
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

AXES = {"pan-left": (0, 1), "pan-right": (0, -1), "tilt-up": (1, 1), "tilt-down": (1, -1),
        "orbit-right": (0, 1), "orbit-left": (0, -1)}
"""preset -> (flow axis, sign the picture moves with; the orbits: the sign the rendered clips' x flow has)"""


def load_run(run: str | Path):
    from safetensors.torch import load_file

    from models.video_generation.luma_dream.camera_adapter import load_camera_adapter
    from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

    run = Path(run)
    names = ("base_vae.safetensors", "base_transformer.safetensors", "camera_adapter.safetensors")
    missing = [n for n in names if not (run / n).is_file()]
    if missing:
        raise UserError(f"--run {run} lacks {', '.join(missing)}: give the folder a tiny camera run with base fits "
                        "wrote (or --out to train one)")
    pipe = LTXVideoPipeline.tiny()
    pipe.vae.load_state_dict(load_file(str(run / names[0])))
    pipe.transformer.load_state_dict(load_file(str(run / names[1])))
    pipe.camera_adapter = load_camera_adapter(run / names[2], pipe.transformer.config.inner_dim)
    return pipe


def motion_table(pipe, num_frames: int = 9, size: tuple[int, int] = (32, 32), per_preset: int = 4, seed: int = 1,
                 tf_levels=(0.3, 0.6, 0.8, 0.95), tf_steps: int = 20, scales=(1.0, 2.0, 3.0, 4.0),
                 prompt: str = "a small scene") -> dict[str, dict[str, float]]:
    """row -> preset -> mean along-axis flow (px a frame)."""
    from models.video_generation.luma_dream.camera_adapter import camera_token_bias
    from models.video_generation.luma_dream.model import latent_coords
    from models.video_generation.luma_dream.pipeline import pack, unpack
    from models.video_generation.luma_dream.training import SceneClips
    from models.video_generation.luma_dream.camera import global_flow

    vc = pipe.vae.config
    h, w = size
    f, lh, lw = pipe.vae.latent_frames(num_frames), h // vc.spatial_ratio, w // vc.spatial_ratio
    clips = SceneClips(per_preset * len(AXES), num_frames, size, seed=seed, presets=tuple(AXES))
    ctx, mask = pipe.encode_prompt([prompt], 128)
    coords = latent_coords(1, f, lh, lw, (vc.temporal_ratio / 25.0, vc.spatial_ratio, vc.spatial_ratio))
    rows: dict[str, dict[str, list[float]]] = {}

    def add(row: str, name: str, flow: torch.Tensor) -> None:
        axis, sign = AXES[name]
        rows.setdefault(row, {}).setdefault(name, []).append(sign * float(flow[axis]))

    def denoise(x, s0, bias):
        sig = torch.linspace(s0, 0.0, tf_steps + 1)
        for a, b in zip(sig[:-1], sig[1:]):
            v = pipe.transformer(x, ctx, (a * 1000).expand(1), coords, mask, token_bias=bias)
            x = x + (b - a) * v
        return x

    def frames(tokens):
        return pipe.decode(unpack(tokens, f, lh, lw))[0]

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for item in clips.items:
            name, video = item["preset"], item["video"]
            x0 = pack(pipe.vae.normalize(pipe.vae.encode(video.permute(1, 0, 2, 3)[None]).mode().float()))
            add("rendered", name, global_flow((video + 1) / 2))
            add("vae round trip", name, global_flow(frames(x0)))
            bias = camera_token_bias(pipe.camera_adapter, name, num_frames, h, w, vc.temporal_ratio, vc.spatial_ratio)
            eps = torch.randn(x0.shape, generator=g)
            for s0 in tf_levels:
                xs = (1 - s0) * x0 + s0 * eps
                add(f"teacher forced {s0:g}, adapter", name, global_flow(frames(denoise(xs, s0, bias))))
                add(f"teacher forced {s0:g}, none", name, global_flow(frames(denoise(xs, s0, None))))
        for name in AXES:
            for s in scales:
                out = pipe(prompt=prompt, camera=name, num_frames=num_frames, height=h, width=w, steps=20,
                           guidance_scale=1.0, seed=0, num_videos=3, progress=False, camera_scale=s)
                for v in out.pixels:
                    add(f"from noise, camera_scale {s:g}", name, global_flow(v))
    return {row: {n: sum(v) / len(v) for n, v in d.items()} for row, d in rows.items()}


def train_run(out: str | Path, toy: bool = False) -> Path:
    from dataclasses import replace

    from models.video_generation.luma_dream.training import TINY_PROOF, CameraRunOptions, CameraTrainer

    cfg = TINY_PROOF if not toy else replace(TINY_PROOF, steps=2, num_clips=2, num_frames=5, size=(16, 16),
                                             batch_size=2, hidden=8, base_vae_steps=1, base_steps=1)
    CameraTrainer(cfg, CameraRunOptions(out=str(out), progress=not toy)).run()
    return Path(out)


@cli_errors("benchmarks.luma_camera")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.luma_camera", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=None, help="a trained tiny camera run folder (base_vae, base_transformer, "
                                               "camera_adapter .safetensors)")
    p.add_argument("--out", default=None, help="train the proof recipe (training.TINY_PROOF) into this folder first")
    p.add_argument("--per-preset", type=int, default=4, help="held-out rendered clips per preset (default 4)")
    p.add_argument("--tf-steps", type=int, default=20, help="Euler steps of the teacher-forced denoising (default 20)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the table as JSON too")
    p.add_argument("--toy", action="store_true", help="seconds: a 2-step tiny run on 5-frame 16x16 clips (in --out, "
                                                      "default a temporary folder), one clip per preset")
    args = p.parse_args(argv)
    with cli_errors("benchmarks.luma_camera"):
        if args.toy and args.run is not None:
            raise UserError("--toy trains its own seconds-long run: drop --run")
        if not args.toy and (args.run is None) == (args.out is None):
            raise UserError("give --run DIR (a trained run) or --out DIR (train the proof recipe there), one of them")
        if args.per_preset < 1 or args.tf_steps < 1:
            raise UserError("--per-preset and --tf-steps must be at least 1")
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.toy:
            import tempfile

            run = train_run(args.out or tempfile.mkdtemp(prefix="luma_camera_toy_"), toy=True)
            table = motion_table(load_run(run), num_frames=5, size=(16, 16), per_preset=1, tf_levels=(0.5,),
                                 tf_steps=2, scales=(1.0, 2.0))
        else:
            run = Path(args.run) if args.run else train_run(args.out)
            table = motion_table(load_run(run), per_preset=args.per_preset, tf_steps=args.tf_steps)
        ref = table["vae round trip"]
        print(f"mean flow along the asked axis, px a frame (x / VAE round trip), run {run}, "
              f"{torch.get_num_threads()} threads")
        print(f"{'':34s}" + "".join(f"{n:>18s}" for n in AXES))
        for row, d in table.items():
            cells = "".join(f"{d[n]:+8.2f} ({d[n] / ref[n]:+5.2f}x)" if abs(ref[n]) > 1e-6 else f"{d[n]:+18.2f}"
                            for n in AXES)
            print(f"{row:34s}{cells}")
        if args.json:
            print(json.dumps(table))
        return table


if __name__ == "__main__":
    main()
