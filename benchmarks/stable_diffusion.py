"""Forward-pass speed of the SDXL UNet and the SD3 MMDiT against diffusers, measured in one run.

    python -m benchmarks.stable_diffusion                    # CPU, fp32, mid-size configs
    python -m benchmarks.stable_diffusion --device cuda      # CUDA, fp16 UNet / bf16 MMDiT, larger latents
    python -m benchmarks.stable_diffusion --full             # the full-size sdxl-base / sd3-medium shapes

Both sides get the same weights (ours converted from diffusers') and the same inputs; ours and theirs
alternate, and the median of `--repeat` timed calls after `--warmup` calls is reported with the ratio
ours / diffusers (below 1.0: ours is faster). Outputs are checked to agree before timing. On a shared
or loaded machine `--stat min` (best of the repeats) is the steadier figure.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from models.image_generation.stable_diffusion.convert_mmdit import mmdit_config_to_diffusers, mmdit_diffusers_to_native
from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_diffusers_to_native
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig

# Mid-size: every block type of the full models at a width a CPU runs in well under a second.
UNET_MID = UNetConfig(model_channels=128, channel_mult=(1, 2, 4), transformer_depth=(0, 2, 2),
                      transformer_depth_middle=2, context_dim=768, adm_in_channels=256 + 6 * 256)
MMDIT_MID = MMDiTConfig(depth=6, num_heads=8, context_in_dim=1024, adm_in_channels=512, pos_embed_max_size=64,
                        qk_norm=True, dual_attention_layers=(0, 1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fns: dict[str, Callable[[], torch.Tensor]], device: torch.device, warmup: int, repeat: int,
          stat: str = "median") -> dict:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():  # alternate, so load changes hit both sides alike
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    pick = statistics.median if stat == "median" else min
    return {k: pick(v) for k, v in times.items()}


def bench_unet(cfg: UNetConfig, device: torch.device, dtype: torch.dtype, batch: int, latent: int,
               warmup: int, repeat: int, stat: str = "median") -> dict:
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
        res = _time(fns, device, warmup, repeat, stat)
    return {**res, "max_abs_diff": diff}


def bench_mmdit(cfg: MMDiTConfig, device: torch.device, dtype: torch.dtype, batch: int, latent: int,
                warmup: int, repeat: int, stat: str = "median") -> dict:
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
        res = _time(fns, device, warmup, repeat, stat)
    return {**res, "max_abs_diff": diff}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.stable_diffusion", description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--full", action="store_true", help="full-size sdxl-base and sd3-medium (slow on CPU)")
    p.add_argument("--batch", type=int, default=2, help="batch (2 = one classifier-free-guidance call)")
    p.add_argument("--latent", type=int, default=None, help="latent side (default: 32 on CPU, 128 on CUDA)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--stat", choices=("median", "min"), default="median", help="how repeats are summarised")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    from utils.errors import cli_errors
    from utils.torch_utils import resolve_device

    with cli_errors("benchmarks.stable_diffusion"):
        device = resolve_device(args.device)
        if args.threads:
            torch.set_num_threads(args.threads)
        cuda = device.type == "cuda"
        latent = args.latent or (128 if cuda else 32)
        unet_cfg = UNetConfig.preset("sdxl-base") if args.full else UNET_MID
        mmdit_cfg = MMDiTConfig.preset("sd3-medium") if args.full else MMDIT_MID
        where = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
        print(f"device: {where}; batch {args.batch}, latent {latent}x{latent}, {args.stat} of {args.repeat}")
        rows = [("SDXL UNet" + (" (sdxl-base)" if args.full else " (mid)"),
                 bench_unet(unet_cfg, device, torch.float16 if cuda else torch.float32, args.batch, latent,
                            args.warmup, args.repeat, args.stat)),
                ("SD3 MMDiT" + (" (sd3-medium)" if args.full else " (mid)"),
                 bench_mmdit(mmdit_cfg, device, torch.bfloat16 if cuda else torch.float32, args.batch, latent,
                             args.warmup, args.repeat, args.stat))]
        print(f"{'model':24s} {'ours (s)':>10s} {'diffusers (s)':>14s} {'ratio':>7s} {'max diff':>10s}")
        for name, r in rows:
            print(f"{name:24s} {r['ours']:10.4f} {r['diffusers']:14.4f} {r['ours'] / r['diffusers']:7.3f} "
                  f"{r['max_abs_diff']:10.2e}")


if __name__ == "__main__":
    main()
