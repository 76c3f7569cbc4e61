"""FID feature extraction speed: ours vs pytorch-fid, same random weights, batch size and device, one run.

    python -m benchmarks.fid                       # 10k images (GPU)
    python -m benchmarks.fid --num-images 64       # a CPU-sized run
    python -m benchmarks.fid --toy                 # seconds: 2 images at 75 px, unresized (what the tests run)

Both networks get the same float batches in [0, 1] at `--size` px (resized to 299 inside), so the
figure is the network's throughput (resize included), not image decoding. Prints features per
second of each and the ratio ours / pytorch-fid.
"""
from __future__ import annotations

import time

import torch

from utils.cli import ArgumentParser
from utils.errors import cli_errors


def _random_state_dict(seed: int = 0) -> dict:
    from utils.metrics.inception import FIDInceptionV3

    torch.manual_seed(seed)
    model = FIDInceptionV3()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return model.state_dict()


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _interleaved(fns, batches, device) -> list[float]:
    """Total seconds of each fn over the batches, alternating fn order per batch so that machine
    load drifts hit both alike."""
    for fn in fns:
        fn(batches[0])  # warm-up (cudnn autotune, allocator)
    totals = [0.0] * len(fns)
    for k, b in enumerate(batches):
        order = range(len(fns)) if k % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            _sync(device)
            start = time.perf_counter()
            fns[i](b)
            _sync(device)
            totals[i] += time.perf_counter() - start
    return totals


@cli_errors("benchmarks.fid")
def main(argv=None) -> dict:
    p = ArgumentParser(prog="benchmarks.fid", description=__doc__.split("\n\n")[0])
    p.add_argument("--num-images", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--size", type=int, default=64, help="input size before the resize to 299")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-resize", action="store_true",
                   help="feed both networks at --size (at least 75), skipping the 299 px resize of the FID setting")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: 2 images of 75 px, --no-resize")
    args = p.parse_args(argv)
    if args.toy:
        args.num_images, args.batch_size, args.size, args.no_resize = 2, 1, 75, True
    with cli_errors("benchmarks.fid"):
        import pytorch_fid.inception as pfi

        from utils.metrics.inception import FIDInceptionV3
        from utils.torch_utils import resolve_device

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        sd = _random_state_dict()
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = lambda *a, **k: sd  # no download: the same random weights
        try:
            ref = pfi.InceptionV3([3], resize_input=not args.no_resize).to(device).eval()
        finally:
            pfi.load_state_dict_from_url = original
        ours = FIDInceptionV3(resize="none" if args.no_resize else "pytorch-fid")
        ours.load_state_dict(sd)
        ours = ours.to(device).fuse()
        n_batches = max(1, args.num_images // args.batch_size)
        g = torch.Generator().manual_seed(0)
        batch = torch.rand(args.batch_size, 3, args.size, args.size, generator=g).to(device)
        batches = [batch] * n_batches
        with torch.inference_mode():
            diff = (ref(batch)[0].flatten(1) - ours(batch)).abs().max().item()
            t_ref, t_ours = _interleaved([ref, ours], batches, device)
        n = n_batches * args.batch_size
        print(f"device {device}, {n} images, batch {args.batch_size}, max |feature diff| {diff:.2e}")
        print(f"pytorch-fid: {n / t_ref:9.1f} features/s")
        print(f"ours:        {n / t_ours:9.1f} features/s")
        print(f"ratio ours / pytorch-fid: {t_ref / t_ours:.2f}")
    return {"images": n, "reference_features_per_s": n / t_ref, "ours_features_per_s": n / t_ours,
            "ratio": t_ref / t_ours, "max_abs_diff": diff}


if __name__ == "__main__":
    main()
