"""Attention at 4096 tokens: ours (utils.nn.attention through the dispatcher) vs diffusers'
`dispatch_attention_fn` (the path every diffusers attention processor takes), in one run.

Both receive the same projected (B, L, heads, D) tensors, as a transformer block produces them;
ours views them as (B, heads, L, D), diffusers permutes inside its dispatcher. Timings are the
minimum over interleaved repeats. The CPU default is 4 heads (a 24-head FLUX-sized call takes
seconds per repeat on 2 cores); `--heads 24` gives the full FLUX shape. `--toy` is a seconds-long
run at 64 tokens (what the test suite runs, so this code cannot rot).

    python -m benchmarks.attention [--device cpu|cuda] [--heads N] [--tokens L] [--head-dim D] [--toy]
"""
from __future__ import annotations

import time

import torch

from utils.cli import ArgumentParser
from utils.errors import cli_errors
from utils.nn import attention, resolve_attention_backend
from utils.torch_utils import resolve_device, resolve_dtype


def _time(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@cli_errors("benchmarks.attention")
def main(argv: list[str] | None = None) -> dict:
    ap = ArgumentParser(prog="python -m benchmarks.attention", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default 4 on CPU, 24 on CUDA)")
    ap.add_argument("--tokens", type=int, default=4096, help="sequence length (default 4096)")
    ap.add_argument("--head-dim", type=int, default=64, help="head dim (default 64)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dtype", default=None, help="fp32 (CPU default) or fp16/bf16 (CUDA default bf16)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of each (default 5 CPU, 50 CUDA)")
    ap.add_argument("--toy", action="store_true", help="a seconds-long run (64 tokens, 2 heads of 16, 3 repeats)")
    args = ap.parse_args(argv)
    if args.toy:
        args.tokens, args.heads, args.head_dim, args.repeats = 64, 2, 16, 3

    from diffusers.models.attention_dispatch import dispatch_attention_fn

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device, default_cuda=torch.bfloat16)
    heads = args.heads or (24 if device.type == "cuda" else 4)
    repeats = args.repeats or (50 if device.type == "cuda" else 5)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.tokens, heads, args.head_dim)
    q, k, v = (torch.randn(shape, generator=g).to(device, dtype) for _ in range(3))

    def ours():
        return attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    def theirs():
        return dispatch_attention_fn(q, k, v)

    with torch.inference_mode():
        diff = (ours().float() - theirs().float()).abs().max().item()
        for _ in range(2):  # warm-up
            ours(), theirs()
        t_ours, t_theirs = [], []
        for _ in range(repeats):
            t_ours.append(_time(ours, device))
            t_theirs.append(_time(theirs, device))
    backend = resolve_attention_backend(q.transpose(1, 2), backend=None)
    best_ours, best_theirs = min(t_ours), min(t_theirs)
    ratio = best_ours / best_theirs
    print(f"attention B={args.batch} L={args.tokens} heads={heads} D={args.head_dim} {str(dtype).replace('torch.', '')} "
          f"on {device} (ours via backend '{backend}'), {repeats} repeats")
    print(f"ours:   {best_ours * 1e3:9.2f} ms")
    print(f"theirs: {best_theirs * 1e3:9.2f} ms  (diffusers dispatch_attention_fn)")
    print(f"ratio ours/theirs: {ratio:.3f}   max abs diff {diff:.2e}")
    return {"ours_s": best_ours, "theirs_s": best_theirs, "ratio": ratio, "max_abs_diff": diff}


if __name__ == "__main__":
    with cli_errors("benchmarks.attention"):
        main()
