"""x4 upscaling throughput: our RRDBNet against spandrel's on the same weights, in one run.

Both networks get the same random RRDBNet weights (spandrel through its own loader of our state dict,
ours as they are), the same image, and are timed alternately after a warm-up; the outputs are compared.
The figure is output megapixels per second (the x4 image's pixels / seconds).

    python -m benchmarks.upscale                          # RealESRGAN_x4plus (23 blocks), 128x128 in, CPU
    python -m benchmarks.upscale --preset realesrgan-x4plus-anime-6b --size 256 --device cuda --dtype fp16
    python -m benchmarks.upscale --toy                    # seconds: 8 features, 1 block, 32x32 in
"""
from __future__ import annotations

import statistics
import time

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors, did_you_mean


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def parse_args(argv: list[str] | None = None):
    p = ArgumentParser(prog="python -m benchmarks.upscale", description="x4 upscaling: ours vs spandrel.")
    p.add_argument("--preset", default="realesrgan-x4plus", help="an esrgan preset (its architecture, random weights)")
    p.add_argument("--size", type=int, default=128, help="input side in pixels")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward")
    p.add_argument("--repeats", type=int, default=3, help="timed forwards of each implementation")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16")
    p.add_argument("--toy", action="store_true", help="a tiny network and image (what the tests run)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    with cli_errors("benchmarks/upscale.py"):
        args = parse_args(argv)
        from dataclasses import replace

        from spandrel import ModelLoader

        from models.gan.esrgan.config import RRDB_PRESETS
        from models.gan.esrgan.model import RRDBNet
        from utils.torch_utils import resolve_device, resolve_dtype

        if args.preset not in RRDB_PRESETS or args.preset == "tiny":
            raise UserError(f"--preset {args.preset} is not an ESRGAN preset this benchmark runs: "
                            f"{did_you_mean(args.preset, [p for p in RRDB_PRESETS if p != 'tiny'])}")
        for flag, v in (("--size", args.size), ("--batch-size", args.batch_size), ("--repeats", args.repeats)):
            if v < 1:
                raise UserError(f"{flag} must be at least 1, got {v}")
        config = RRDB_PRESETS[args.preset]
        size, repeats, label = args.size, args.repeats, args.preset
        if args.toy:
            config = replace(config, num_feat=8, num_block=1)  # spandrel fixes the growth channels at 32
            size, repeats, label = 32, 2, "toy (8 features, 1 block)"
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
        torch.manual_seed(0)
        ours = RRDBNet(config).eval()
        with torch.no_grad():
            for p in ours.parameters():
                p.mul_(0.5)  # keep 23 random blocks from overflowing in half precision
        theirs = ModelLoader().load_from_state_dict(ours.state_dict()).model.eval()
        ours, theirs = ours.to(device, dtype), theirs.to(device, dtype)
        x = torch.rand(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device, dtype)
        with torch.inference_mode():
            a, b = ours(x), theirs(x)  # the warm-up, and the comparison
            diff = (a.float() - b.float()).abs().max().item()
            t_ours = _time(lambda: ours(x), device, repeats)
            t_theirs = _time(lambda: theirs(x), device, repeats)
        mpix = args.batch_size * (size * config.scale) ** 2 / 1e6
        r = {"ours_mpix_per_s": mpix / statistics.median(t_ours),
             "spandrel_mpix_per_s": mpix / statistics.median(t_theirs), "max_abs_diff": diff,
             "device": str(device), "dtype": str(dtype).removeprefix("torch."), "input": size,
             "threads": torch.get_num_threads()}
        r["ratio"] = r["ours_mpix_per_s"] / r["spandrel_mpix_per_s"]
        print(f"x{config.scale} upscaling, {label}, {args.batch_size} x {size}x{size} in, {r['device']} {r['dtype']}, "
              f"{r['threads']} threads")
        print(f"  ours      {r['ours_mpix_per_s']:10.4f} output Mpx/s")
        print(f"  spandrel  {r['spandrel_mpix_per_s']:10.4f} output Mpx/s")
        print(f"  ratio     {r['ratio']:8.2f}x   max |ours - spandrel| = {diff:.2e}")
        return r


if __name__ == "__main__":
    main()
