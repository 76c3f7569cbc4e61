"""VAE decode speed: utils.encoders.vae.AutoencoderKL against diffusers' AutoencoderKL, in one run.

Both models hold the same random weights (ours converted from diffusers' state dict) and decode the
same latent (default 64x64x4 -> a 512x512 image) under torch.inference_mode. Prints the median time
of each and the ratio ours/theirs (below 1.0: ours is faster).

    python -m benchmarks.vae                       # CPU, float32, SD-size VAE
    python -m benchmarks.vae --device cuda --dtype fp16 --preset sdxl --repeats 20
    python -m benchmarks.vae --toy                 # seconds: the tiny VAE at 64 px (what the tests run)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from utils.cli import ArgumentParser
from utils.errors import cli_errors


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def run(preset: str = "sd", size: int = 512, batch: int = 1, device: str | None = None, dtype: str | None = None,
        repeats: int = 5, warmup: int = 1, seed: int = 0) -> dict:
    from diffusers import AutoencoderKL as DiffusersVAE

    from utils.encoders import vae_convert
    from utils.encoders.vae import AutoencoderKL, VAEConfig
    from utils.torch_utils import resolve_device, resolve_dtype
    from utils.weights import load_into

    dev = resolve_device(device)
    dt = resolve_dtype(dtype or "fp32", dev)
    cfg = VAEConfig.preset(preset).with_(force_upcast=False)  # time the dtype asked for, in both models
    torch.manual_seed(seed)
    theirs = DiffusersVAE(**vae_convert.config_to_diffusers(cfg)).eval()
    ours = AutoencoderKL(cfg).eval()
    load_into(ours, vae_convert.diffusers_to_native(theirs.state_dict()), what="benchmark VAE")
    theirs.to(device=dev, dtype=dt)
    ours.to(device=dev, dtype=dt)
    side = size // cfg.downscale
    z = torch.randn(batch, cfg.latent_channels, side, side, generator=torch.Generator().manual_seed(seed))
    z = z.to(device=dev, dtype=dt)

    with torch.inference_mode():
        diff = (ours.decode(z).float() - theirs.decode(z).sample.float()).abs().max().item()
        # Interleave the two so that drifting clocks or thermal state hit both alike.
        t_ours, t_theirs = [], []
        for _ in range(repeats):
            t_theirs.append(_time(lambda: theirs.decode(z), dev, warmup))
            t_ours.append(_time(lambda: ours.decode(z), dev, warmup))
            warmup = 0
    ours_s, theirs_s = (statistics.median(t[0] for t in ts) for ts in (t_ours, t_theirs))
    ours_cpu, theirs_cpu = (statistics.median(t[1] for t in ts) for ts in (t_ours, t_theirs))
    return {"preset": preset, "size": size, "batch": batch, "device": str(dev), "dtype": str(dt).replace("torch.", ""),
            "threads": torch.get_num_threads(), "ours_s": ours_s, "diffusers_s": theirs_s, "ratio": ours_s / theirs_s,
            "ours_cpu_s": ours_cpu, "diffusers_cpu_s": theirs_cpu, "cpu_ratio": ours_cpu / theirs_cpu,
            "max_abs_diff": diff}


@cli_errors("benchmarks.vae")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.vae", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="sd", help="VAE preset: sd, sdxl, sd3, flux, tiny (default sd)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--batch", type=int, default=1, help="latents decoded per call (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16 (default fp32)")
    p.add_argument("--repeats", type=int, default=5, help="timed decodes per model (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed decodes per model first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: preset tiny, 64 px, 3 repeats, CPU")
    args = p.parse_args(argv)
    if args.toy:
        args.preset, args.size, args.repeats, args.warmup, args.device = "tiny", 64, 3, 1, args.device or "cpu"
    with cli_errors("benchmarks.vae"):
        if args.threads:
            torch.set_num_threads(args.threads)
        r = run(args.preset, args.size, args.batch, args.device, args.dtype, args.repeats, args.warmup)
        print(f"VAE decode {r['batch']}x{r['size']}x{r['size']} ({r['preset']}, {r['device']}, {r['dtype']}): "
              f"ours {r['ours_s'] * 1000:.1f} ms, diffusers {r['diffusers_s'] * 1000:.1f} ms, "
              f"ratio ours/diffusers {r['ratio']:.3f} (max abs diff {r['max_abs_diff']:.2e})")
        if r["device"] == "cpu":  # on a shared CPU, process time is steadier than wall time
            print(f"  process CPU time ({r['threads']} threads): ours {r['ours_cpu_s'] * 1000:.1f} ms, diffusers "
                  f"{r['diffusers_cpu_s'] * 1000:.1f} ms, ratio {r['cpu_ratio']:.3f}")
        return r


if __name__ == "__main__":
    main()
