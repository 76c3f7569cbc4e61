"""The UNet with motion modules (AnimateDiff on SD 1.5): our MotionUNet against diffusers' UNetMotionModel.

Both hold the same random weights: diffusers' UNet2DConditionModel + MotionAdapter are built first (every
tensor moved off its init, the zero-initialised output layers included), then converted into ours through
the stable_diffusion package's UNet converter and the MotionAdapter layout (runway_gen3/convert.py). The
two denoise the same video latents with classifier-free guidance's batch of two clips, interleaved (each
going first in turn) under torch.inference_mode. Prints the median of each, the ratio ours/diffusers and
the largest difference of the outputs.

    python -m benchmarks.motion_unet                      # CPU, float32: a mid-size UNet, 2 x 8 frames of 32x32
    python -m benchmarks.motion_unet --unet sd15 --latent 64x64 --frames 16 --device cuda --dtype fp16
    python -m benchmarks.motion_unet --toy                # seconds: the tiny config (what the test runs)
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

MID = dict(model_channels=64, channel_mult=(1, 2, 4, 4), num_res_blocks=2, transformer_depth=(1, 1, 1, 0),
           transformer_depth_middle=1, num_heads=8, linear_projection=False, context_dim=256, adm_in_channels=0)
"""SD 1.5's structure (4 levels, 2 ResBlocks each, 8 heads, conv projections) at a fifth of its width."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise UserError(f"a size is HxW (e.g. 32x32), got '{text}'") from None


def _unet_config(unet: str):
    from models.image_generation.stable_diffusion.unet import UNetConfig

    if unet == "mid":
        return UNetConfig(**MID)
    if unet in ("tiny", "sd15"):
        return UNetConfig.preset("tiny-sd15" if unet == "tiny" else "sd15")
    raise UserError(f"--unet must be mid, tiny or sd15, got '{unet}'")


def build_pair(unet: str = "mid", frames: int = 8, seed: int = 0):
    """(ours, diffusers', the UNet config): MotionUNet and UNetMotionModel holding the same random weights."""
    from diffusers import MotionAdapter as DiffusersAdapter
    from diffusers import UNet2DConditionModel, UNetMotionModel

    from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_diffusers_to_native
    from models.image_generation.stable_diffusion.unet import SDXLUNet
    from models.video_generation.runway_gen3.convert import adapter_from_state
    from models.video_generation.runway_gen3.unet_motion import MotionUNet
    from utils.weights import load_into

    cfg = _unet_config(unet)
    heads, groups = (4, 8) if unet == "tiny" else (8, 32)
    torch.manual_seed(seed)
    unet2d = UNet2DConditionModel(**unet_config_to_diffusers(cfg))
    adapter = DiffusersAdapter(block_out_channels=tuple(cfg.level_channels), motion_layers_per_block=cfg.num_res_blocks,
                               motion_num_attention_heads=heads, motion_norm_num_groups=groups,
                               motion_max_seq_length=max(32, frames))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*unet2d.parameters(), *adapter.parameters()]:
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    theirs = UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    image = SDXLUNet(cfg).eval()
    load_into(image, unet_diffusers_to_native(unet2d.state_dict(), cfg), what="benchmark UNet")
    ours = MotionUNet(image, adapter_from_state(adapter.state_dict(), heads, groups)).eval()
    return ours, theirs, cfg


def unet_speed(unet: str = "mid", latent: tuple[int, int] = (32, 32), frames: int = 8, device: str | None = None,
               dtype: str | None = None, repeats: int = 5, warmup: int = 1, seed: int = 0) -> dict:
    from utils.torch_utils import resolve_device, resolve_dtype

    if frames < 1 or repeats < 1 or warmup < 0:
        raise UserError(f"--frames and --repeats must be at least 1, --warmup at least 0; got {frames}, {repeats}, "
                        f"{warmup}")
    if latent[0] % 8 or latent[1] % 8:
        raise UserError(f"--latent {latent[0]}x{latent[1]} must be a multiple of 8 (the UNet halves it three times)")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype or "fp32", dev)
    ours, theirs, cfg = build_pair(unet, frames, seed)
    if dev.type != "cpu" or dt != torch.float32:  # (diffusers warns on any .to() of a UNetMotionModel)
        ours.to(device=dev, dtype=dt)
        theirs.to(device=dev, dtype=dt)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, frames, cfg.in_channels, *latent, generator=g).to(dev, dt)
    t = torch.tensor([501.0, 501.0]).to(dev)
    ctx = torch.randn(2, 77, cfg.context_dim, generator=g).to(dev, dt)
    x_theirs = x.permute(0, 2, 1, 3, 4)  # diffusers: (B, C, F, H, W), the text per frame as its pipelines give it
    ctx_theirs = ctx.repeat_interleave(frames, 0)
    with torch.inference_mode():
        expected = theirs(x_theirs, t, ctx_theirs).sample.permute(0, 2, 1, 3, 4)
        diff = (ours(x, t, ctx).float() - expected.float()).abs().max().item()
        t_ours, t_theirs = [], []
        for i in range(repeats):  # interleaved, each going first in turn, so drift and load hit both alike
            pair = [(t_theirs, lambda: theirs(x_theirs, t, ctx_theirs)), (t_ours, lambda: ours(x, t, ctx))]
            for times, fn in (pair if i % 2 == 0 else pair[::-1]):
                times.append(_time(fn, dev, warmup))
            warmup = 0
    ours_s, theirs_s = (statistics.median(v[0] for v in ts) for ts in (t_ours, t_theirs))
    ours_cpu, theirs_cpu = (statistics.median(v[1] for v in ts) for ts in (t_ours, t_theirs))
    return {"unet": unet, "latent": list(latent), "frames": frames, "device": str(dev),
            "dtype": str(dt).replace("torch.", ""), "threads": torch.get_num_threads(), "repeats": repeats,
            "ours_s": ours_s, "diffusers_s": theirs_s, "ratio": ours_s / theirs_s, "ours_cpu_s": ours_cpu,
            "diffusers_cpu_s": theirs_cpu, "cpu_ratio": ours_cpu / theirs_cpu, "max_abs_diff": diff}


@cli_errors("benchmarks.motion_unet")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.motion_unet", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unet", default="mid", help="UNet size: mid (default), tiny or sd15 (the release's)")
    p.add_argument("--latent", default="32x32", help="latent HxW of the UNet input (default 32x32)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8; two clips, as CFG runs)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16 (default fp32)")
    p.add_argument("--repeats", type=int, default=5, help="timed forwards per UNet (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per UNet first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: the tiny UNet, 4 frames, 3 repeats, CPU")
    args = p.parse_args(argv)
    if args.toy:
        args.unet, args.latent, args.frames, args.repeats = "tiny", "16x16", 4, 3
        args.device = args.device or "cpu"
    with cli_errors("benchmarks.motion_unet"):
        latent = _size(args.latent)
        if args.threads:
            torch.set_num_threads(args.threads)
        r = unet_speed(args.unet, latent, args.frames, args.device, args.dtype, args.repeats, args.warmup)
        print(f"UNet + motion modules forward ({r['unet']}, 2 x {r['frames']} frames of {r['latent'][0]}x"
              f"{r['latent'][1]} latents, {r['device']}, {r['dtype']}, {r['threads']} threads): ours "
              f"{r['ours_s'] * 1000:.1f} ms, diffusers {r['diffusers_s'] * 1000:.1f} ms, ratio ours/diffusers "
              f"{r['ratio']:.3f} (max abs diff {r['max_abs_diff']:.2e})")
        if r["device"] == "cpu":
            print(f"  process CPU time: ours {r['ours_cpu_s'] * 1000:.1f} ms, diffusers {r['diffusers_cpu_s'] * 1000:.1f} "
                  f"ms, ratio {r['cpu_ratio']:.3f}")
        if args.json:
            print(json.dumps(r))
        return r


if __name__ == "__main__":
    main()
