"""Video diffusion transformers: forward speed against diffusers, and the Wan VAE's decode memory.

1. Transformer forward, ours vs diffusers, on the same random weights (ours converted from diffusers'
   state dict) and the same inputs, interleaved in one run under torch.inference_mode (each model goes
   first in turn, so drift and other load hit both alike): the Wan transformer of the sora package vs
   `WanTransformer3DModel`, and the LTX-Video transformer of the luma_dream package vs
   `LTXVideoTransformer3DModel`. Prints the median of each and the ratio ours/diffusers (and the max
   abs difference of the two outputs, which must stay at float rounding).
2. The Wan 2.1 video VAE (utils/encoders/wan_vae) decodes the latents of `--decode-frames` frames
   (49: 13 latent frames) whole (`chunk_size=None`) and with chunked causal decoding (`--chunk` latent
   frames at a time). Peak memory of each decode beyond what is held before it (CUDA:
   max_memory_allocated; CPU: the growth of the peak resident set of a spawned process that does only
   that decode).

    python -m benchmarks.video_transformers                   # CPU, float32, mid-size configs
    python -m benchmarks.video_transformers --only wan --latent 13x30x52 --size full --device cuda --dtype bf16
    python -m benchmarks.video_transformers --toy             # seconds: the tiny configs (what the tests run)
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

WAN_MID = dict(dim=512, ffn_dim=1536, freq_dim=256, text_dim=512, num_heads=4, num_layers=4)
"""Wan's block structure (heads of 128 as released) at a third of the 1.3B model's width, four blocks."""
LTX_MID = dict(in_channels=128, out_channels=128, num_attention_heads=8, attention_head_dim=64, num_layers=4,
               cross_attention_dim=512, caption_channels=512)
"""LTX-Video's block structure (heads of 64 as released, 128 latent channels) at a quarter width, four blocks."""
WAN_TINY = dict(in_dim=4, out_dim=4, dim=48, ffn_dim=64, freq_dim=32, text_dim=32, num_heads=2, num_layers=2)
LTX_TINY = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                cross_attention_dim=32, caption_channels=16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, warmup: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _grid(text: str) -> tuple[int, int, int]:
    parts = text.split("x")
    try:
        f, h, w = (int(p) for p in parts)
    except ValueError:
        raise UserError(f"a latent grid is FxHxW (e.g. 5x16x16), got '{text}'") from None
    if min(f, h, w) < 1:
        raise UserError(f"a latent grid needs sizes >= 1, got '{text}'")
    return f, h, w


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.partition("x")
    try:
        return int(h), int(w or h)
    except ValueError:
        raise UserError(f"a size is HxW (e.g. 128x128), got '{text}'") from None


def _perturb(module: torch.nn.Module, seed: int, scale: float) -> None:
    """Move every tensor off its init (zero-initialised projections included), so the outputs compared are real."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def _race(ours: Callable[[], torch.Tensor], theirs: Callable[[], torch.Tensor], device: torch.device,
          repeats: int, warmup: int) -> dict:
    with torch.inference_mode():
        diff = (ours().float() - theirs().float()).abs().max().item()
        t_ours, t_theirs = [], []
        for i in range(repeats):
            pair = [(t_theirs, theirs), (t_ours, ours)]
            for times, fn in (pair if i % 2 == 0 else pair[::-1]):
                times.append(_time(fn, device, warmup))
            warmup = 0
    ours_s, theirs_s = (statistics.median(v[0] for v in ts) for ts in (t_ours, t_theirs))
    ours_cpu, theirs_cpu = (statistics.median(v[1] for v in ts) for ts in (t_ours, t_theirs))
    return {"ours_s": ours_s, "diffusers_s": theirs_s, "ratio": ours_s / theirs_s, "ours_cpu_s": ours_cpu,
            "diffusers_cpu_s": theirs_cpu, "cpu_ratio": ours_cpu / max(theirs_cpu, 1e-9), "max_abs_diff": diff,
            "threads": torch.get_num_threads()}


def wan_speed(size: str = "mid", grid: tuple[int, int, int] = (5, 16, 16), text_tokens: int = 64, batch: int = 2,
              device: str | None = None, dtype: str | None = None, repeats: int = 5, warmup: int = 1,
              seed: int = 0) -> dict:
    """Our Wan transformer and diffusers' on `batch` latents of `grid` (latent frames, rows, cols)."""
    from diffusers import WanTransformer3DModel

    from models.video_generation.sora.config import WanTransformerConfig, transformer_config
    from models.video_generation.sora.convert import diffusers_to_official
    from models.video_generation.sora.model import WanTransformer
    from utils.torch_utils import resolve_device, resolve_dtype
    from utils.weights import load_into

    dev = resolve_device(device)
    dt = resolve_dtype(dtype or "fp32", dev)
    cfg = {"mid": lambda: WanTransformerConfig(**WAN_MID), "tiny": lambda: WanTransformerConfig(**WAN_TINY)}.get(
        size, lambda: transformer_config(size))()
    f, h, w = grid
    if h % cfg.patch_size[1] or w % cfg.patch_size[2]:
        raise UserError(f"--wan-latent {f}x{h}x{w}: rows and cols must be multiples of the patch {cfg.patch_size[1]}")
    torch.manual_seed(seed)
    theirs = WanTransformer3DModel(**cfg.to_diffusers()).eval()
    _perturb(theirs, seed, 0.02)
    ours = WanTransformer(cfg).eval()
    load_into(ours, diffusers_to_official(theirs.state_dict()), what="benchmark Wan transformer")
    for model in (theirs, ours):  # no dtype argument at float32 (diffusers warns on any cast)
        model.to(dev) if dt == torch.float32 else model.to(dev, dt)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, cfg.in_dim, f, h, w, generator=g).to(dev, dt)
    t = torch.full((batch,), 700.0, device=dev)
    ctx = torch.randn(batch, text_tokens, cfg.text_dim, generator=g).to(dev, dt)
    r = _race(lambda: ours(x, t, ctx), lambda: theirs(x, t, ctx, return_dict=False)[0], dev, repeats, warmup)
    tokens = f * (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    return {"model": "wan", "size": size, "grid": list(grid), "tokens": tokens, "batch": batch, "device": str(dev),
            "dtype": str(dt).replace("torch.", ""), **r}


def ltx_speed(size: str = "mid", grid: tuple[int, int, int] = (5, 16, 16), text_tokens: int = 64, batch: int = 2,
              device: str | None = None, dtype: str | None = None, repeats: int = 5, warmup: int = 1,
              seed: int = 0) -> dict:
    """Our LTX-Video transformer (luma_dream) and diffusers' on `batch` latents of `grid` tokens."""
    from diffusers import LTXVideoTransformer3DModel

    from models.video_generation.luma_dream.config import LTXTransformerConfig, transformer_preset
    from models.video_generation.luma_dream.convert import diffusers_to_official
    from models.video_generation.luma_dream.model import LTXVideoTransformer, latent_coords
    from utils.torch_utils import resolve_device, resolve_dtype
    from utils.weights import load_into

    dev = resolve_device(device)
    dt = resolve_dtype(dtype or "fp32", dev)
    cfg = {"mid": lambda: LTXTransformerConfig(**LTX_MID), "tiny": lambda: LTXTransformerConfig(**LTX_TINY)}.get(
        size, lambda: transformer_preset(size))()
    f, h, w = grid
    torch.manual_seed(seed)
    theirs = LTXVideoTransformer3DModel(**cfg.to_diffusers()).eval()
    _perturb(theirs, seed, 0.02)
    ours = LTXVideoTransformer(cfg).eval()
    load_into(ours, diffusers_to_official(theirs.state_dict()), what="benchmark LTX transformer")
    for model in (theirs, ours):  # no dtype argument at float32 (diffusers warns on any cast)
        model.to(dev) if dt == torch.float32 else model.to(dev, dt)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, f * h * w, cfg.in_channels, generator=g).to(dev, dt)
    ctx = torch.randn(batch, text_tokens, cfg.caption_channels, generator=g).to(dev, dt)
    mask = torch.ones(batch, text_tokens, device=dev)
    t = torch.full((batch,), 700.0, device=dev)
    scale = (8 / 25, 32.0, 32.0)  # LTX's 8x temporal / 32x spatial compression at 25 fps
    coords = latent_coords(batch, f, h, w, scale, device=dev)
    r = _race(lambda: ours(x, ctx, t, coords, mask),
              lambda: theirs(x, ctx, t, mask, num_frames=f, height=h, width=w, rope_interpolation_scale=scale,
                             return_dict=False)[0], dev, repeats, warmup)
    return {"model": "ltx", "size": size, "grid": list(grid), "tokens": f * h * w, "batch": batch, "device": str(dev),
            "dtype": str(dt).replace("torch.", ""), **r}


# -- Wan VAE decode memory ------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    """A memory figure (kB) of this process from /proc/self/status (getrusage's peak where that is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _vae_inputs(vae: str, size: tuple[int, int], frames: int, device: torch.device, dtype: str | None, seed: int):
    from utils.encoders.wan_vae import WanVAE, wan_vae_config
    from utils.torch_utils import resolve_dtype

    dt = resolve_dtype(dtype or "fp32", device)
    cfg = wan_vae_config(vae)
    torch.manual_seed(seed)
    model = WanVAE(cfg).eval().to(device, dt)
    s = cfg.spatial_ratio
    z = torch.randn(1, cfg.z_dim, model.latent_frames(frames), size[0] // s, size[1] // s,
                    generator=torch.Generator().manual_seed(seed)).to(device, dt)
    return model, z


def _decode_child(vae: str, size: tuple[int, int], frames: int, chunk: int | None, dtype: str, seed: int,
                  threads: int, queue) -> None:
    """In a spawned process: build the VAE and its latents, then report the peak resident set's growth (MB)
    over one decode, and the decode's seconds."""
    torch.set_num_threads(threads)
    model, z = _vae_inputs(vae, size, frames, torch.device("cpu"), dtype, seed)
    try:  # Linux: reset the peak resident set (VmHWM) to the current one, so setup does not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _status_kb("VmRSS")
    t0 = time.perf_counter()
    with torch.inference_mode():
        model.decode(z, chunk_size=chunk)
    queue.put((max(0, _status_kb("VmHWM") - before) / 1024, time.perf_counter() - t0))


def _decode_peak(vae: str, size: tuple[int, int], frames: int, chunk: int | None, device: torch.device,
                 dtype: str | None, seed: int) -> tuple[float, float]:
    """(peak MB beyond what is held before the decode, seconds) of one decode."""
    if device.type == "cuda":
        model, z = _vae_inputs(vae, size, frames, device, dtype, seed)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.decode(z, chunk_size=chunk)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, time.perf_counter() - t0
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # not fork: a forked child of a threaded torch process can hang
    queue = ctx.Queue()
    child = ctx.Process(target=_decode_child, args=(vae, size, frames, chunk, dtype or "fp32", seed,
                                                    torch.get_num_threads(), queue))
    child.start()
    try:
        peak, seconds = queue.get(timeout=1800)
        return float(peak), float(seconds)
    finally:
        child.join()


def decode_memory(vae: str = "wan2.1", size: tuple[int, int] = (128, 128), frames: int = 49, chunk: int = 1,
                  device: str | None = None, dtype: str | None = None, seed: int = 0) -> dict:
    from utils.encoders.wan_vae import wan_vae_config
    from utils.torch_utils import resolve_device

    dev = resolve_device(device)
    cfg = wan_vae_config(vae)
    s, r = cfg.spatial_ratio, cfg.temporal_ratio
    if size[0] % s or size[1] % s:  # checked here, before any process starts
        raise UserError(f"--vae-size {size[0]}x{size[1]} is not a multiple of the Wan VAE's {s}")
    if frames < 1 or (frames - 1) % r:
        raise UserError(f"--decode-frames {frames}: the Wan VAE decodes 1 + {r}k frames (e.g. 49)")
    if chunk < 1:
        raise UserError(f"--chunk must be at least 1, got {chunk}")
    whole, whole_s = _decode_peak(vae, size, frames, None, dev, dtype, seed)
    chunked, chunked_s = _decode_peak(vae, size, frames, chunk, dev, dtype, seed)
    return {"vae": vae, "size": list(size), "frames": frames, "latent_frames": 1 + (frames - 1) // r, "chunk": chunk,
            "device": str(dev), "peak_mb_whole": whole, "peak_mb_chunked": chunked, "seconds_whole": whole_s,
            "seconds_chunked": chunked_s, "memory_ratio": chunked / whole if whole > 0 else float("nan")}


def _print_speed(r: dict) -> None:
    f, h, w = r["grid"]
    name = {"wan": "Wan transformer (sora) vs WanTransformer3DModel",
            "ltx": "LTX-Video transformer (luma_dream) vs LTXVideoTransformer3DModel"}[r["model"]]
    print(f"{name} ({r['size']}, {r['batch']} x {f}x{h}x{w} latents = {r['tokens']} tokens, {r['device']}, "
          f"{r['dtype']}): ours {r['ours_s'] * 1000:.1f} ms, diffusers {r['diffusers_s'] * 1000:.1f} ms, "
          f"ratio ours/diffusers {r['ratio']:.3f} (max abs diff {r['max_abs_diff']:.2e})")
    if r["device"] == "cpu":
        print(f"  process CPU time ({r['threads']} threads): ours {r['ours_cpu_s'] * 1000:.1f} ms, diffusers "
              f"{r['diffusers_cpu_s'] * 1000:.1f} ms, ratio {r['cpu_ratio']:.3f}")


@cli_errors("benchmarks.video_transformers")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.video_transformers", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=("wan", "ltx", "vae"), action="append", default=None,
                   help="run only these parts (repeatable; default: wan, ltx and vae)")
    p.add_argument("--size", default="mid", help="transformer sizes: mid (default), tiny, or a preset of each "
                                                 "package (e.g. wan2.1-t2v-1.3b for --only wan)")
    p.add_argument("--latent", default="5x16x16", help="latent grid FxHxW of the transformer input (default 5x16x16)")
    p.add_argument("--text-tokens", type=int, default=64, help="text tokens of the cross-attention (default 64)")
    p.add_argument("--batch", type=int, default=2, help="batch of the forward (default 2: a CFG pair)")
    p.add_argument("--vae", default="wan2.1", help="Wan VAE size: wan2.1 (default, the release) or tiny")
    p.add_argument("--vae-size", default="128x128", help="decoded frame HxW (default 128x128)")
    p.add_argument("--decode-frames", type=int, default=49, help="frames decoded, 1 + 4k (default 49)")
    p.add_argument("--chunk", type=int, default=1, help="latent frames per chunk of the chunked decode (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16 (default fp32)")
    p.add_argument("--repeats", type=int, default=5, help="timed forwards per model (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per model first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: tiny configs, 3 repeats, CPU")
    args = p.parse_args(argv)
    if args.toy:
        args.size, args.latent, args.text_tokens, args.repeats = "tiny", "2x4x4", 8, 3
        args.vae, args.vae_size, args.device = "tiny", "16x16", args.device or "cpu"
        if args.decode_frames == 49:
            args.decode_frames = 9
    parts = args.only or ["wan", "ltx", "vae"]
    with cli_errors("benchmarks.video_transformers"):
        grid = _grid(args.latent)
        vae_size = _size(args.vae_size)
        for name, value in (("--text-tokens", args.text_tokens), ("--batch", args.batch),
                            ("--repeats", args.repeats)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if args.threads:
            torch.set_num_threads(args.threads)
        out: dict = {}
        common = dict(text_tokens=args.text_tokens, batch=args.batch, device=args.device, dtype=args.dtype,
                      repeats=args.repeats, warmup=args.warmup)
        if "wan" in parts:
            out["wan"] = wan_speed(args.size, grid, **common)
            _print_speed(out["wan"])
        if "ltx" in parts:
            out["ltx"] = ltx_speed(args.size, grid, **common)
            _print_speed(out["ltx"])
        if "vae" in parts:
            m = out["decode"] = decode_memory(args.vae, vae_size, args.decode_frames, args.chunk, args.device,
                                              args.dtype)
            print(f"Wan VAE decode of {m['frames']} frames ({m['latent_frames']} latent) at {m['size'][0]}x"
                  f"{m['size'][1]} ({m['vae']}, {m['device']}): peak {m['peak_mb_whole']:.0f} MB whole "
                  f"({m['seconds_whole']:.1f} s), {m['peak_mb_chunked']:.0f} MB in chunks of {m['chunk']} latent "
                  f"frame(s) ({m['seconds_chunked']:.1f} s), ratio {m['memory_ratio']:.3f}")
        return out


if __name__ == "__main__":
    main()
