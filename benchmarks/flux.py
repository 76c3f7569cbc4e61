"""FLUX denoiser speed: our FluxTransformer against diffusers' FluxTransformer2DModel, in one run.

CPU (default): a mid-size FLUX (hidden 512, 8 heads, 2 double + 3 single blocks, about 30M
parameters) on 1024 image tokens (a 512x512 image) and 64 text tokens, float32. Both models hold
the same random weights (ours converted from diffusers' state dict through convert.py); calls are
interleaved and the median is reported with the ratio ours/diffusers (below 1.0: ours is faster).

CUDA (--device cuda --full-size): the real FLUX.1 [dev] sizes (12B parameters, random weights) in
bf16 at 1024x1024 (4096 image tokens, 512 text tokens): seconds per denoising step, ours eager, ours
with torch.compile of the blocks (--compile), and diffusers eager. Needs about 24 GB per model; the
two models are timed one after the other, not held together.

    python -m benchmarks.flux                                   # CPU, mid-size
    python -m benchmarks.flux --device cuda --full-size --compile
    python -m benchmarks.flux --toy                             # seconds: a toy FLUX (what the tests run)
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch

from utils.cli import ArgumentParser
from utils.errors import cli_errors

MID = dict(in_channels=64, out_channels=64, vec_in_dim=256, context_in_dim=512, hidden_size=512, num_heads=8,
           depth=2, depth_single_blocks=3, axes_dim=(8, 28, 28), guidance_embed=True)
# --toy: every block type at a size that runs in milliseconds, on 64 image and 8 text tokens
TOY = dict(in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32, hidden_size=64, num_heads=2,
           depth=1, depth_single_blocks=1, axes_dim=(8, 12, 12), guidance_embed=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device) -> tuple[float, float]:
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _inputs(p, tokens_hw: tuple[int, int], n_txt: int, device, dtype, seed: int = 0) -> dict:
    from utils.nn import grid_ids

    g = torch.Generator().manual_seed(seed)
    h, w = tokens_hw
    return dict(img=torch.randn(1, h * w, p.in_channels, generator=g).to(device, dtype),
                img_ids=grid_ids(h, w).to(device), txt=torch.randn(1, n_txt, p.context_in_dim, generator=g).to(device, dtype),
                txt_ids=torch.zeros(n_txt, 3, device=device), t=torch.full((1,), 0.7, device=device, dtype=dtype),
                y=torch.randn(1, p.vec_in_dim, generator=g).to(device, dtype),
                g=torch.full((1,), 3.5, device=device, dtype=dtype))


def _ours_call(model, x):
    return lambda: model(x["img"], x["img_ids"][None], x["txt"], x["txt_ids"][None], x["t"], x["y"], x["g"])


def _theirs_call(model, x):
    return lambda: model(hidden_states=x["img"], encoder_hidden_states=x["txt"], pooled_projections=x["y"],
                         timestep=x["t"], img_ids=x["img_ids"], txt_ids=x["txt_ids"], guidance=x["g"]).sample


def run_cpu(repeats: int = 5, warmup: int = 1, seed: int = 0, device: str = "cpu", params: dict = MID,
            tokens_hw: tuple[int, int] = (32, 32), n_txt: int = 64) -> dict:
    """Mid-size (or `params`), float32: ours vs diffusers, interleaved."""
    from diffusers import FluxTransformer2DModel

    from models.image_generation.flux import FluxParams, FluxTransformer
    from models.image_generation.flux import convert as C
    from utils.weights import load_into

    dev = torch.device(device)
    p = FluxParams(**params)
    torch.manual_seed(seed)
    theirs = FluxTransformer2DModel(**C.params_to_diffusers_config(p)).eval().to(dev)
    with torch.device("meta"):
        ours = FluxTransformer(p)
    load_into(ours, C.diffusers_to_native({k: v.clone() for k, v in theirs.state_dict().items()}))
    ours.eval().to(dev)
    x = _inputs(p, tokens_hw, n_txt, dev, torch.float32, seed)
    f_ours, f_theirs = _ours_call(ours, x), _theirs_call(theirs, x)
    with torch.inference_mode():
        diff = (f_ours() - f_theirs()).abs().max().item()
        for _ in range(warmup):
            f_theirs(), f_ours()
        t_ours, t_theirs = [], []
        for _ in range(repeats):  # interleaved so that a busy machine slows both alike
            t_theirs.append(_time(f_theirs, dev))
            t_ours.append(_time(f_ours, dev))
    ours_s, theirs_s = (statistics.median(t[0] for t in ts) for ts in (t_ours, t_theirs))
    ours_c, theirs_c = (statistics.median(t[1] for t in ts) for ts in (t_ours, t_theirs))
    # the fastest run of each is the least disturbed by other processes on a shared machine
    ours_min, theirs_min = (min(t[1] for t in ts) for ts in (t_ours, t_theirs))
    return {"min_cpu_ratio": ours_min / theirs_min, "params_m": ours.num_parameters() / 1e6, "device": str(dev),
            "image_tokens": tokens_hw[0] * tokens_hw[1], "text_tokens": n_txt, "threads": torch.get_num_threads(),
            "ours_s": ours_s, "diffusers_s": theirs_s, "ratio": ours_s / theirs_s, "ours_cpu_s": ours_c,
            "diffusers_cpu_s": theirs_c, "cpu_ratio": ours_c / theirs_c, "max_abs_diff": diff}


def run_full_size(device: str = "cuda", repeats: int = 5, compile_blocks: bool = False, size: int = 1024,
                  n_txt: int = 512, reference: bool = True) -> dict:
    """FLUX.1 [dev] sizes, bf16, random weights: seconds per step (one transformer call)."""
    from models.image_generation.flux import FluxTransformer

    dev = torch.device(device)
    dt = torch.bfloat16
    out: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev), "size": size}
    tokens = (size // 16, size // 16)

    def timed(fn, warm: int) -> float:
        with torch.inference_mode():
            for _ in range(warm):
                fn()
            return statistics.median(_time(fn, dev)[0] for _ in range(repeats))

    with torch.device(dev):
        ours = FluxTransformer("dev").to(dt).eval()
    x = _inputs(ours.params, tokens, n_txt, dev, dt)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    out["ours_s_per_step"] = timed(_ours_call(ours, x), 2)
    if dev.type == "cuda":
        out["ours_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    if compile_blocks:
        ours.compile_blocks()
        out["ours_compiled_s_per_step"] = timed(_ours_call(ours, x), 3)
    params = ours.params
    del ours
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    if reference:
        from diffusers import FluxTransformer2DModel

        from models.image_generation.flux import convert as C

        with torch.device(dev):
            theirs = FluxTransformer2DModel(**C.params_to_diffusers_config(params)).to(dt).eval()
        out["diffusers_s_per_step"] = timed(_theirs_call(theirs, x), 2)
        out["ratio"] = out["ours_s_per_step"] / out["diffusers_s_per_step"]
    return out


@cli_errors("benchmarks.flux")
def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m benchmarks.flux", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    ap.add_argument("--full-size", action="store_true", help="FLUX.1 [dev] sizes in bf16 (needs a large GPU)")
    ap.add_argument("--compile", action="store_true", help="with --full-size: also time torch.compile'd blocks")
    ap.add_argument("--size", type=int, default=1024, help="with --full-size: image side in pixels (default 1024)")
    ap.add_argument("--no-reference", action="store_true", help="with --full-size: skip diffusers")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per model (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--toy", action="store_true", help="a seconds-long run: a toy FLUX on 64 image + 8 text tokens")
    args = ap.parse_args(argv)
    with cli_errors("benchmarks.flux"):
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.full_size:
            from utils.torch_utils import resolve_device

            dev = resolve_device(args.device)
            r = run_full_size(str(dev), args.repeats, args.compile, args.size, reference=not args.no_reference)
            line = f"FLUX.1 [dev] full size, bf16, {r['size']}x{r['size']} on {r['device']}: ours {r['ours_s_per_step']:.3f} s/step"
            if "ours_compiled_s_per_step" in r:
                line += f", ours compiled {r['ours_compiled_s_per_step']:.3f} s/step"
            if "diffusers_s_per_step" in r:
                line += f", diffusers {r['diffusers_s_per_step']:.3f} s/step, ratio {r['ratio']:.3f}"
            if "ours_peak_gib" in r:
                line += f" (ours peak {r['ours_peak_gib']:.1f} GiB)"
            print(line)
            return r
        size = dict(params=TOY, tokens_hw=(8, 8), n_txt=8) if args.toy else {}
        r = run_cpu(3 if args.toy else args.repeats, device=args.device, **size)
        print(f"FLUX denoiser forward, {r['params_m']:.1f}M params, {r['image_tokens']} image + {r['text_tokens']} text "
              f"tokens, fp32, {r['device']}: "
              f"ours {r['ours_s'] * 1000:.1f} ms, diffusers {r['diffusers_s'] * 1000:.1f} ms, "
              f"ratio ours/diffusers {r['ratio']:.3f} (max abs diff {r['max_abs_diff']:.1e})")
        if r["device"] == "cpu":
            print(f"  process CPU time ({r['threads']} threads): ours {r['ours_cpu_s'] * 1000:.1f} ms, diffusers "
                  f"{r['diffusers_cpu_s'] * 1000:.1f} ms, ratio {r['cpu_ratio']:.3f} (fastest runs: {r['min_cpu_ratio']:.3f})")
        return r


if __name__ == "__main__":
    main()
