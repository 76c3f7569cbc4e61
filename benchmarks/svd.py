"""SVD: UNet forward speed against diffusers, and the peak memory of decoding 25 frames with and without chunking.

1. The SVD UNet (models/video_generation/svd) and diffusers' UNetSpatioTemporalConditionModel hold the
   same random weights (ours converted from diffusers' state dict, with diffusers' GroupNorm eps so the
   outputs agree) and denoise the same video latents with classifier-free guidance's batch of two,
   interleaved, under torch.inference_mode. Prints the median of each and the ratio ours/theirs.
2. The temporal VAE decodes `--frames` latents all at once and `--chunk` at a time; the peak memory of
   each (CUDA: max_memory_allocated; CPU: the growth of the peak resident set of a forked process that
   does only that decode).

    python -m benchmarks.svd                        # CPU, float32: a mid-size UNet, 8 frames of 32x32 latents
    python -m benchmarks.svd --device cuda --dtype fp16 --unet svd --latent 72x128 --frames 14 --vae-size 576x1024
    python -m benchmarks.svd --toy                  # seconds: the tiny configs (what the tests run)
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

MID = dict(model_channels=64, channel_mult=(1, 2, 4, 4), transformer_depth=(1, 1, 1, 0), head_dim=32,
           context_dim=256, adm_in_channels=96, addition_time_embed_dim=32)
"""The release's structure at a fifth of its width (64..256 channels, heads of 32)."""


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


def unet_speed(unet: str = "mid", latent: tuple[int, int] = (32, 32), frames: int = 8, device: str | None = None,
               dtype: str | None = None, repeats: int = 5, warmup: int = 1, seed: int = 0) -> dict:
    from diffusers import UNetSpatioTemporalConditionModel

    from models.video_generation.svd.conditioning import svd_vector
    from models.video_generation.svd.config import SVDUNetConfig
    from models.video_generation.svd.convert_unet import unet_config_to_diffusers, unet_diffusers_to_native
    from models.video_generation.svd.model import SVDUNet
    from utils.torch_utils import resolve_device, resolve_dtype
    from utils.weights import load_into

    dev = resolve_device(device)
    dt = resolve_dtype(dtype or "fp32", dev)
    cfg = (SVDUNetConfig(**MID) if unet == "mid" else SVDUNetConfig.preset(unet)).with_(resnet_eps="diffusers")
    torch.manual_seed(seed)
    theirs = UNetSpatioTemporalConditionModel(**unet_config_to_diffusers(cfg)).eval()
    g = torch.Generator().manual_seed(seed)  # move every tensor off its init (zero-initialised output layers
    with torch.no_grad():                    # included), so the agreement check compares real outputs
        for p in theirs.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    ours = SVDUNet(cfg).eval()
    load_into(ours, unet_diffusers_to_native(theirs.state_dict(), cfg), what="benchmark UNet")
    theirs.to(device=dev, dtype=dt)
    ours.to(device=dev, dtype=dt)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(2, frames, cfg.in_channels, *latent, generator=g).to(dev, dt)
    t = torch.tensor([0.7, 0.7]).to(dev)
    ctx = torch.randn(2, 1, cfg.context_dim, generator=g).to(dev, dt)
    ids = torch.tensor([[6.0, 127.0, 0.02]] * 2).to(dev)
    y = svd_vector(ids, cfg.addition_time_embed_dim).to(dev, dt)
    with torch.inference_mode():
        diff = (ours(x, t, ctx, y).float() - theirs(x, t, ctx, ids.to(dt)).sample.float()).abs().max().item()
        t_ours, t_theirs = [], []
        for i in range(repeats):  # interleaved, each going first in turn, so drift and load hit both alike
            pair = [(t_theirs, lambda: theirs(x, t, ctx, ids.to(dt))), (t_ours, lambda: ours(x, t, ctx, y))]
            for times, fn in (pair if i % 2 == 0 else pair[::-1]):
                times.append(_time(fn, dev, warmup))
            warmup = 0
    ours_s, theirs_s = (statistics.median(v[0] for v in ts) for ts in (t_ours, t_theirs))
    ours_cpu, theirs_cpu = (statistics.median(v[1] for v in ts) for ts in (t_ours, t_theirs))
    return {"unet": unet, "latent": list(latent), "frames": frames, "device": str(dev),
            "dtype": str(dt).replace("torch.", ""), "threads": torch.get_num_threads(), "ours_s": ours_s,
            "diffusers_s": theirs_s, "ratio": ours_s / theirs_s, "ours_cpu_s": ours_cpu, "diffusers_cpu_s": theirs_cpu,
            "cpu_ratio": ours_cpu / theirs_cpu, "max_abs_diff": diff}


def _decode_child(vae: str, size: tuple[int, int], frames: int, chunk: int | None, dtype: str, seed: int,
                  queue) -> None:
    """In a fresh (spawned) process: build the VAE and its latents, then report the growth of the peak
    resident set (MB) that one decode takes."""
    model, z = _decode_inputs(vae, size, frames, torch.device("cpu"), dtype, seed)
    try:  # Linux: reset the peak resident set (VmHWM) to the current one, so imports and setup do not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _status_kb("VmRSS")
    with torch.inference_mode():
        model.decode(z, frames, chunk)
    queue.put(max(0, _status_kb("VmHWM") - before) / 1024)


def _status_kb(field: str) -> int:
    """A memory figure (kB) of this process from /proc/self/status (the peak RSS where that is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _decode_inputs(vae: str, size: tuple[int, int], frames: int, device: torch.device, dtype: str | None, seed: int):
    from utils.encoders.temporal_vae import AutoencoderKLTemporalDecoder, TemporalVAEConfig
    from utils.torch_utils import resolve_dtype

    dt = resolve_dtype(dtype or "fp32", device)
    cfg = TemporalVAEConfig.preset(vae).with_(force_upcast=False)
    torch.manual_seed(seed)
    model = AutoencoderKLTemporalDecoder(cfg).eval().to(device, dt)
    d = cfg.downscale
    if size[0] % d or size[1] % d:
        raise UserError(f"--vae-size {size[0]}x{size[1]} is not a multiple of the VAE's {d}")
    z = torch.randn(frames, cfg.latent_channels, size[0] // d, size[1] // d,
                    generator=torch.Generator().manual_seed(seed)).to(device, dt)
    return model, z


def _decode_peak(vae: str, size: tuple[int, int], frames: int, chunk: int | None, device: torch.device,
                 dtype: str | None, seed: int) -> float:
    """Peak memory (MB) that one decode takes, beyond what is held before it starts (CUDA:
    max_memory_allocated; CPU: the peak resident set's growth in a spawned process that does only that)."""
    if device.type == "cuda":
        model, z = _decode_inputs(vae, size, frames, device, dtype, seed)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.inference_mode():
            model.decode(z, frames, chunk)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # not fork: a forked child of a threaded torch process can hang
    queue = ctx.Queue()
    child = ctx.Process(target=_decode_child, args=(vae, size, frames, chunk, dtype or "fp32", seed, queue))
    child.start()
    try:
        return float(queue.get(timeout=600))
    finally:
        child.join()


def decode_memory(vae: str = "svd", size: tuple[int, int] = (128, 128), frames: int = 25, chunk: int = 5,
                  device: str | None = None, dtype: str | None = None, seed: int = 0) -> dict:
    from utils.torch_utils import resolve_device

    dev = resolve_device(device)
    from utils.encoders.temporal_vae import TemporalVAEConfig

    d = TemporalVAEConfig.preset(vae).downscale
    if size[0] % d or size[1] % d:  # checked here, before any process starts
        raise UserError(f"--vae-size {size[0]}x{size[1]} is not a multiple of the VAE's {d}")
    full = _decode_peak(vae, size, frames, None, dev, dtype, seed)
    chunked = _decode_peak(vae, size, frames, chunk, dev, dtype, seed)
    return {"vae": vae, "size": list(size), "frames": frames, "chunk": chunk, "device": str(dev),
            "peak_mb_all_at_once": full, "peak_mb_chunked": chunked,
            "memory_ratio": chunked / full if full > 0 else float("nan")}


@cli_errors("benchmarks.svd")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.svd", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--unet", default="mid", help="UNet size: mid (default), tiny or svd (the release)")
    p.add_argument("--latent", default="32x32", help="latent HxW of the UNet input (default 32x32)")
    p.add_argument("--frames", type=int, default=8, help="frames of the UNet input (default 8)")
    p.add_argument("--vae", default="svd", help="temporal VAE size: svd (default) or tiny")
    p.add_argument("--vae-size", default="128x128", help="decoded frame HxW (default 128x128)")
    p.add_argument("--decode-frames", type=int, default=25, help="frames decoded (default 25)")
    p.add_argument("--chunk", type=int, default=5, help="decode_chunk_size of the chunked decode (default 5)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16 (default fp32)")
    p.add_argument("--repeats", type=int, default=5, help="timed forwards per UNet (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per UNet first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: tiny UNet and VAE, 3 repeats, CPU")
    args = p.parse_args(argv)
    if args.toy:
        args.unet, args.latent, args.frames, args.repeats = "tiny", "16x16", 4, 3
        args.vae, args.vae_size, args.device = "tiny", "32x32", args.device or "cpu"
    with cli_errors("benchmarks.svd"):
        if args.threads:
            torch.set_num_threads(args.threads)
        u = unet_speed(args.unet, _size(args.latent), args.frames, args.device, args.dtype, args.repeats, args.warmup)
        m = decode_memory(args.vae, _size(args.vae_size), args.decode_frames, args.chunk, args.device, args.dtype)
        print(f"SVD UNet forward ({u['unet']}, 2 x {u['frames']} frames of {u['latent'][0]}x{u['latent'][1]} latents, "
              f"{u['device']}, {u['dtype']}): ours {u['ours_s'] * 1000:.1f} ms, diffusers {u['diffusers_s'] * 1000:.1f} "
              f"ms, ratio ours/diffusers {u['ratio']:.3f} (max abs diff {u['max_abs_diff']:.2e})")
        if u["device"] == "cpu":
            print(f"  process CPU time ({u['threads']} threads): ours {u['ours_cpu_s'] * 1000:.1f} ms, diffusers "
                  f"{u['diffusers_cpu_s'] * 1000:.1f} ms, ratio {u['cpu_ratio']:.3f}")
        print(f"temporal VAE decode of {m['frames']} frames at {m['size'][0]}x{m['size'][1]} ({m['vae']}): peak "
              f"{m['peak_mb_all_at_once']:.0f} MB all at once, {m['peak_mb_chunked']:.0f} MB in chunks of {m['chunk']}")
        return {"unet": u, "decode": m}


if __name__ == "__main__":
    main()
