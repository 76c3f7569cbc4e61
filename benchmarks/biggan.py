"""Generator throughput of BigGAN-deep: ours against pytorch-pretrained-biggan, in one run.

Both models are built from the same random weights (ours through `convert.py`), fed the same
truncated noise and classes, and timed alternately after a warm-up; the outputs are compared.

    python -m benchmarks.biggan                       # BigGAN-deep-128, batch 8, CPU, float32
    python -m benchmarks.biggan --batch-size 32 --device cuda --preset biggan-deep-256
    python -m benchmarks.biggan --toy                 # seconds: the tiny preset (what the tests run)
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


def _time(fn, device: torch.device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def _settle_spectral_norm(model: torch.nn.Module, steps: int = 10) -> None:
    """Run power iterations on the reference's random u, v: fresh random vectors can give a
    near-zero sigma estimate in eval mode, hence overflowing weights, like no trained model has."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "weight_orig"):
                w = m.weight_orig.flatten(1)
                u = m.weight_u
                for _ in range(steps):
                    v = torch.nn.functional.normalize(w.t() @ u, dim=0, eps=1e-12)
                    u = torch.nn.functional.normalize(w @ v, dim=0, eps=1e-12)
                m.weight_u.copy_(u)
                m.weight_v.copy_(v)


@cli_errors("benchmarks.biggan")
def main(argv: list[str] | None = None) -> dict:
    parser = ArgumentParser(prog="python -m benchmarks.biggan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="biggan-deep-128",
                        choices=["biggan-deep-128", "biggan-deep-256", "biggan-deep-512", "tiny"])
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per model (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first (default 1)")
    parser.add_argument("--truncation", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--toy", action="store_true", help="a seconds-long run: preset tiny, batch 2, 3 repeats")
    args = parser.parse_args(argv)
    if args.toy:
        args.preset, args.batch_size, args.repeats, args.warmup = "tiny", 2, 3, 1
    with cli_errors("benchmarks.biggan"):
        from pytorch_pretrained_biggan import BigGAN, BigGANConfig as RefConfig

        from models.gan.biggan import PRESETS, BigGANGenerator, convert_state_dict, truncated_noise
        from utils.torch_utils import resolve_device
        from utils.weights import load_into

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        config = PRESETS[args.preset]
        torch.manual_seed(0)
        ref = BigGAN(RefConfig.from_dict(config.to_reference_dict())).eval()
        _settle_spectral_norm(ref)
        ours = BigGANGenerator(config).eval()
        load_into(ours, convert_state_dict(ref.state_dict(), config))
        ref.to(device)
        ours.to(device)
        gen = torch.Generator().manual_seed(0)
        z = truncated_noise((args.batch_size, config.z_dim), args.truncation, gen).to(device)
        labels = torch.randint(0, config.num_classes, (args.batch_size,), generator=gen)
        one_hot = torch.nn.functional.one_hot(labels, config.num_classes).float().to(device)
        labels = labels.to(device)

        def run_ref():
            return ref(z, one_hot, args.truncation)

        def run_ours():
            return ours(z, labels, args.truncation)

        with torch.inference_mode():
            diff = (run_ref() - run_ours()).abs().max().item()
            for _ in range(args.warmup):
                run_ref()
                run_ours()
            t_ref, t_ours = [], []
            for _ in range(args.repeats):  # alternate, so drifts in machine load hit both
                t_ref += _time(run_ref, device, 1)
                t_ours += _time(run_ours, device, 1)
        ref_ips = args.batch_size / statistics.median(t_ref)
        ours_ips = args.batch_size / statistics.median(t_ours)
        where = f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                    f" ({torch.get_num_threads()} threads)")
        print(f"BigGAN generator throughput, {args.preset}, batch {args.batch_size}, float32, {where}")
        print(f"  pytorch-pretrained-biggan: {ref_ips:8.2f} images/s")
        print(f"  ours:                      {ours_ips:8.2f} images/s")
        print(f"  ratio ours/reference:      {ours_ips / ref_ips:8.2f}x   (max abs diff of outputs {diff:.2e})")
        return {"reference_images_per_s": ref_ips, "ours_images_per_s": ours_ips, "ratio": ours_ips / ref_ips,
                "max_abs_diff": diff}


if __name__ == "__main__":
    main()
