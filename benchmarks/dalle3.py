"""The DALL-E 3 stand-in's two speed claims, measured in one run, as ratios.

1. Decoding: OpenAI's consistency decoder (1 and 2 steps) against the KL VAE decoder, on the same
   latent, at 512 and 1024 px (latents of 64 and 128 per side). Ratio: consistency / VAE (above 1.0:
   the consistency decoder is slower; it is a pixel-space UNet).
2. Sampling: LCM, 4 steps at guidance 1 (one UNet call a step) against 30 Euler steps at guidance 5
   (two a step, the SDXL default), on the same SDXL UNet, at equal size. Ratio: 30-step / LCM (the
   speed-up). Text encoding and decoding are outside this figure (they are the same in both modes).

All networks hold random weights at their full release sizes (timing does not depend on the values;
nothing downloads). Each figure is the median of `--repeats` timed calls after `--warmup` untimed ones.

    python -m benchmarks.dalle3 --device cuda --dtype fp16           # the real figures (needs a GPU)
    python -m benchmarks.dalle3 --device cpu --sizes 512 --repeats 1  # CPU: minutes per figure
    python -m benchmarks.dalle3 --only decode ...                     # one part (decode or sampling)
    python -m benchmarks.dalle3 --toy                                 # seconds: the tiny presets, CPU
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median(fn, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _build(factory, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    from utils.torch_utils import local_seed

    with local_seed(0):
        return factory().eval().to(device, dtype)


def decode_times(sizes, decoder_preset: str, vae_preset: str, device: torch.device, dtype: torch.dtype,
                 repeats: int, warmup: int) -> list[dict]:
    from utils.encoders.consistency_decoder import ConsistencyDecoder, ConsistencyDecoderConfig
    from utils.encoders.vae import AutoencoderKL, VAEConfig

    vae_cfg = VAEConfig.preset(vae_preset).with_(force_upcast=False)
    vae = _build(lambda: AutoencoderKL(vae_cfg), device, dtype)
    dec = _build(lambda: ConsistencyDecoder(ConsistencyDecoderConfig.preset(decoder_preset)), device, dtype)
    if dec.downscale != vae_cfg.downscale:
        raise UserError(f"decoder preset '{decoder_preset}' upsamples x{dec.downscale} but VAE '{vae_preset}' "
                        f"x{vae_cfg.downscale}: pick matching presets")
    rows = []
    for size in sizes:
        if size % vae_cfg.downscale:
            raise UserError(f"--sizes must be multiples of {vae_cfg.downscale}, got {size}")
        side = size // vae_cfg.downscale
        z = torch.randn(1, vae_cfg.latent_channels, side, side, generator=torch.Generator().manual_seed(0))
        z = z.to(device, dtype)
        with torch.inference_mode():
            row = {"size": size,
                   "vae_s": _median(lambda: vae.decode_latents(z), device, repeats, warmup),
                   "consistency_1_s": _median(lambda: dec.decode_latents(z, torch.Generator().manual_seed(0), steps=1),
                                              device, repeats, warmup),
                   "consistency_2_s": _median(lambda: dec.decode_latents(z, torch.Generator().manual_seed(0), steps=2),
                                              device, repeats, warmup)}
        row["ratio_1"] = row["consistency_1_s"] / row["vae_s"]
        row["ratio_2"] = row["consistency_2_s"] / row["vae_s"]
        rows.append(row)
    return rows


def sampling_times(unet_preset: str, size: int, device: torch.device, dtype: torch.dtype, repeats: int,
                   warmup: int, slow_steps: int = 30, fast_steps: int = 4) -> dict:
    from models.image_generation.stable_diffusion import convert as cv
    from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
    from utils.diffusion import cfg_model, get_scheduler, sample, scheduler_from_diffusers_config

    cfg = UNetConfig.preset(unet_preset)
    unet = _build(lambda: SDXLUNet(cfg), device, dtype)
    g = torch.Generator().manual_seed(0)
    down = 8 if unet_preset != "tiny" else 2  # the VAE's downscale of the preset's pipeline
    if size % (down * cfg.downscale):
        raise UserError(f"--sample-size must be a multiple of {down * cfg.downscale}, got {size}")
    side = size // down
    cond = {"context": torch.randn(1, 77, cfg.context_dim, generator=g).to(device, dtype),
            "y": torch.randn(1, cfg.adm_in_channels, generator=g).to(device, dtype)}
    uncond = {k: torch.zeros_like(v) for k, v in cond.items()}
    x = torch.randn(1, cfg.in_channels, side, side, generator=g).to(device, dtype)

    def run(name: str | None, steps: int, guidance: float):
        sched = (scheduler_from_diffusers_config(cv.SDXL_SCHEDULER) if name is None else
                 get_scheduler(name, cv.SDXL_SCHEDULER))
        schedule = sched.schedule(steps)
        model = cfg_model(unet, cond, uncond, guidance)
        return lambda: sample(model, sched, schedule, x * schedule.init_noise_sigma,
                              generator=torch.Generator().manual_seed(0), progress=False)

    with torch.inference_mode():
        slow = _median(run(None, slow_steps, 5.0), device, repeats, warmup)
        fast = _median(run("lcm", fast_steps, 1.0), device, repeats, warmup)
    return {"sample_size": size, "unet": unet_preset, f"steps{slow_steps}_s": slow, f"lcm{fast_steps}_s": fast,
            "slow_s": slow, "fast_s": fast, "speedup": slow / fast, "slow_steps": slow_steps,
            "fast_steps": fast_steps}


PARTS = ("decode", "sampling")


def run(sizes=(512, 1024), decoder_preset: str = "openai", vae_preset: str = "sd", unet_preset: str = "sdxl-base",
        sample_size: int = 1024, device: str | None = None, dtype: str | None = None, repeats: int = 3,
        warmup: int = 1, parts: tuple[str, ...] = PARTS) -> dict:
    """`parts`: 'decode', 'sampling' or both (a part left out is absent from the result)."""
    from utils.torch_utils import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype or "fp32", dev)
    out = {"device": str(dev), "dtype": str(dt).replace("torch.", ""), "threads": torch.get_num_threads()}
    if "decode" in parts:
        out["decode"] = decode_times(sizes, decoder_preset, vae_preset, dev, dt, repeats, warmup)
    if "sampling" in parts:
        out["sampling"] = sampling_times(unet_preset, sample_size, dev, dt, repeats, warmup)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.dalle3", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="decode sizes in px (default 512 1024)")
    p.add_argument("--sample-size", type=int, default=1024, help="image side of the sampling race (default 1024)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16 (default fp32)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per figure (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per figure first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--only", choices=PARTS, default=None, help="time one part: decode or sampling (default both)")
    p.add_argument("--toy", action="store_true",
                   help="seconds: tiny decoder, VAE and UNet at 32 and 64 px, 2 repeats, CPU")
    args = p.parse_args(argv)
    presets = ("openai", "sd", "sdxl-base")
    with cli_errors("benchmarks.dalle3"):
        if args.toy:
            presets = ("tiny", "tiny", "tiny")
            args.sizes, args.sample_size, args.repeats, args.warmup = [32, 64], 32, 2, 1
            args.device = args.device or "cpu"
        if min(args.sizes) < 1 or args.sample_size < 1 or args.repeats < 1 or args.warmup < 0:
            raise UserError("--sizes, --sample-size and --repeats must be positive and --warmup not negative")
        if args.threads:
            torch.set_num_threads(args.threads)
        r = run(args.sizes, *presets, args.sample_size, args.device, args.dtype, args.repeats, args.warmup,
                (args.only,) if args.only else PARTS)
        print(f"DALL-E 3 stand-in ({r['device']}, {r['dtype']}, {r['threads']} threads), median of {args.repeats}:")
        for row in r.get("decode", ()):
            print(f"  decode {row['size']}px: VAE {row['vae_s'] * 1000:.1f} ms, consistency 1 step "
                  f"{row['consistency_1_s'] * 1000:.1f} ms (x{row['ratio_1']:.2f}), 2 steps "
                  f"{row['consistency_2_s'] * 1000:.1f} ms (x{row['ratio_2']:.2f})")
        s = r.get("sampling")
        if s:
            print(f"  sample {s['sample_size']}px: {s['slow_steps']} Euler steps at guidance 5 {s['slow_s']:.3f} s, "
                  f"LCM {s['fast_steps']} steps {s['fast_s']:.3f} s: LCM is {s['speedup']:.1f}x faster")
        return r


if __name__ == "__main__":
    main()
