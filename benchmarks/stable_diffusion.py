"""Forward-pass speed of the SDXL UNet and the SD3 MMDiT against diffusers, measured in one run.

    python -m benchmarks.stable_diffusion --threads 1 --repeat 15   # CPU, fp32, mid-size configs
    python -m benchmarks.stable_diffusion --device cuda             # CUDA, fp16 UNet / bf16 MMDiT, larger latents
    python -m benchmarks.stable_diffusion --full                    # the full-size sdxl-base / sd3-medium shapes
    python -m benchmarks.stable_diffusion --toy                     # seconds: the tiny presets (what the tests run)

Both sides get the same weights (ours converted from diffusers') and the same inputs, and their outputs are
checked to agree before timing. After `--warmup` calls of each, `--repeat` timed calls of each are
interleaved, the order flipping every round (ours-theirs, theirs-ours, ...), so that a load change or an
after-effect of the previous call hits both alike. Printed: the min and the median of each side and the
ratio of the minima, ours / diffusers (below 1.0: ours is faster). On a shared or loaded machine the
minimum is the figure to compare (the median shows how much the load moved); give the CPU one thread
(`--threads 1`) when other jobs run, as more threads than free cores make every run wait on the slowest.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable

import torch

from models.image_generation.stable_diffusion.convert_mmdit import mmdit_config_to_diffusers, mmdit_diffusers_to_native
from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_diffusers_to_native
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.cli import ArgumentParser
from utils.errors import cli_errors

# Mid-size: every block type of the full models at a width a CPU runs in well under a second.
UNET_MID = UNetConfig(model_channels=128, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 2),
                      transformer_depth_middle=2, context_dim=768, adm_in_channels=256 + 6 * 256)
MMDIT_MID = MMDiTConfig(depth=6, num_heads=8, context_in_dim=1024, adm_in_channels=512, pos_embed_max_size=64,
                        qk_norm=True, dual_attention_layers=(0, 1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _load() -> str:
    """The 1 / 5 / 15-minute load averages (how busy the machine was: timings on a shared CPU depend on it)."""
    return " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _time(fns: dict[str, Callable[[], torch.Tensor]], device: torch.device, warmup: int, repeat: int) -> dict:
    """{name: list of seconds per call}: warm up each, then interleave, flipping the order every round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            _sync(device)
            t0 = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(times: dict[str, list[float]]) -> dict:
    """Min and median of each side, the ratio of the minima and of the medians (ours / diffusers)."""
    out: dict = {}
    for name, ts in times.items():
        out[f"{name}_min"], out[f"{name}_median"] = min(ts), statistics.median(ts)
    out["ratio"] = out["ours_min"] / out["diffusers_min"]
    out["ratio_median"] = out["ours_median"] / out["diffusers_median"]
    return out


def bench_unet(cfg: UNetConfig, device: torch.device, dtype: torch.dtype, batch: int, latent: int,
               warmup: int, repeat: int) -> dict:
    from diffusers import UNet2DConditionModel

    import warnings

    warnings.filterwarnings("ignore", message=".*should be kept in float32.*")
    torch.manual_seed(0)
    ref = UNet2DConditionModel(**unet_config_to_diffusers(cfg)).eval()
    ours = SDXLUNet(cfg).eval()
    ours.load_state_dict(unet_diffusers_to_native(ref.state_dict(), cfg))
    ref.to(device, dtype)
    ours.to(device, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, latent, latent, generator=g).to(device, dtype)
    t = torch.full((batch,), 500.0, device=device)
    ctx = torch.randn(batch, 77, cfg.context_dim, generator=g).to(device, dtype)
    n = 6 if cfg.micro_conditioning == "base" else 5
    pooled = torch.randn(batch, cfg.adm_in_channels - n * cfg.addition_time_embed_dim, generator=g).to(device, dtype)
    ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0][:n]] * batch, device=device)
    from models.image_generation.stable_diffusion.conditioning import sdxl_vector

    y = sdxl_vector(pooled, ids, cfg.addition_time_embed_dim).to(device, dtype)
    with torch.inference_mode():
        fns = {"ours": lambda: ours(x, t, ctx, y),
               "diffusers": lambda: ref(x, t, ctx, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample}
        diff = (fns["ours"]().float() - fns["diffusers"]().float()).abs().max().item()
        res = summarize(_time(fns, device, warmup, repeat))
    return {**res, "max_abs_diff": diff}


def bench_mmdit(cfg: MMDiTConfig, device: torch.device, dtype: torch.dtype, batch: int, latent: int,
                warmup: int, repeat: int) -> dict:
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    ref = SD3Transformer2DModel(**mmdit_config_to_diffusers(cfg)).eval()
    ours = MMDiT(cfg).eval()
    ours.load_state_dict(mmdit_diffusers_to_native(ref.state_dict()))
    ref.to(device, dtype)
    ours.to(device, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, cfg.in_channels, latent, latent, generator=g).to(device, dtype)
    t = torch.full((batch,), 500.0, device=device)
    ctx = torch.randn(batch, 154, cfg.context_in_dim, generator=g).to(device, dtype)
    y = torch.randn(batch, cfg.adm_in_channels, generator=g).to(device, dtype)
    with torch.inference_mode():
        fns = {"ours": lambda: ours(x, t, ctx, y), "diffusers": lambda: ref(x, ctx, y, t).sample}
        diff = (fns["ours"]().float() - fns["diffusers"]().float()).abs().max().item()
        res = summarize(_time(fns, device, warmup, repeat))
    return {**res, "max_abs_diff": diff}


@cli_errors("benchmarks.stable_diffusion")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.stable_diffusion", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--full", action="store_true", help="full-size sdxl-base and sd3-medium (slow on CPU)")
    p.add_argument("--batch", type=int, default=2, help="batch (2 = one classifier-free-guidance call)")
    p.add_argument("--latent", type=int, default=None, help="latent side (default: 32 on CPU, 128 on CUDA)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls of each model first")
    p.add_argument("--repeat", type=int, default=10, help="timed calls of each model, interleaved")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: the tiny presets, batch 1, latent 8x8")
    args = p.parse_args(argv)
    if args.toy:
        args.batch, args.latent, args.warmup, args.repeat = 1, 8, 1, 3
    from utils.errors import UserError, cli_errors
    from utils.torch_utils import resolve_device

    with cli_errors("benchmarks.stable_diffusion"):
        if args.repeat < 1 or args.warmup < 0:
            raise UserError(f"--repeat must be at least 1 and --warmup at least 0, got {args.repeat} and "
                            f"{args.warmup}: pass e.g. --repeat 15 --warmup 2")
        device = resolve_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        cuda = device.type == "cuda"
        latent = args.latent or (128 if cuda else 32)
        size = "full" if args.full else "toy" if args.toy else "mid"
        unet_cfg = {"full": UNetConfig.preset("sdxl-base"), "toy": UNetConfig.preset("tiny"), "mid": UNET_MID}[size]
        mmdit_cfg = {"full": MMDiTConfig.preset("sd3-medium"), "toy": MMDiTConfig.preset("tiny"), "mid": MMDIT_MID}[size]
        where = (torch.cuda.get_device_name(device) if cuda else
                 f"CPU ({os.cpu_count()} cores, load average {_load()}), {torch.get_num_threads()} threads")
        print(f"device: {where}; batch {args.batch}, latent {latent}x{latent}; "
              f"{args.repeat} interleaved calls each after {args.warmup} warm-up")
        rows = [("SDXL UNet" + {"full": " (sdxl-base)", "toy": " (tiny)", "mid": " (mid)"}[size],
                 bench_unet(unet_cfg, device, torch.float16 if cuda else torch.float32, args.batch, latent,
                            args.warmup, args.repeat)),
                ("SD3 MMDiT" + {"full": " (sd3-medium)", "toy": " (tiny)", "mid": " (mid)"}[size],
                 bench_mmdit(mmdit_cfg, device, torch.bfloat16 if cuda else torch.float32, args.batch, latent,
                             args.warmup, args.repeat))]
        print(f"{'model':20s} {'ours min/med (s)':>17s} {'diffusers min/med (s)':>22s} {'ratio min':>9s} "
              f"{'ratio med':>9s} {'max diff':>9s}")
        for name, r in rows:
            print(f"{name:20s} {r['ours_min']:8.4f}/{r['ours_median']:<8.4f} "
                  f"{r['diffusers_min']:13.4f}/{r['diffusers_median']:<8.4f} {r['ratio']:9.3f} "
                  f"{r['ratio_median']:9.3f} {r['max_abs_diff']:9.2e}")
        if not cuda:
            print(f"load average at the end: {_load()}")
        return {"sdxl_unet": rows[0][1], "sd3_mmdit": rows[1][1]}


if __name__ == "__main__":
    main()
