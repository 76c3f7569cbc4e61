"""Generator throughput of StyleGAN3 / StyleGAN2 at 256 and 1024 px: ours (eager, and compiled on CUDA), and
NVlabs' reference implementation side by side when a checkout of github.com/NVlabs/stylegan3 is given.

The networks are the official configs with random weights (the speed does not depend on the values); with
--nvlabs, the reference network is built by the release's code with the same constructor arguments, its
weights are copied into ours, both run on the same w and the outputs are compared. Both are timed
alternately after a warm-up (median images/s). On CUDA the release uses its custom CUDA ops
(upfirdn2d / bias_act / filtered_lrelu plugins, compiled on first use) and fp16 in its highest layers, as
it runs by default; ours run their PyTorch ops in the same precision scheme.

    python -m benchmarks.stylegan3                                   # stylegan3-t, 256 and 1024, CPU
    python -m benchmarks.stylegan3 --arch stylegan2 --sizes 256 --batch-size 4
    python -m benchmarks.stylegan3 --device cuda --nvlabs /path/to/stylegan3 --compile
    python -m benchmarks.stylegan3 --toy                             # seconds: tiny, checked against the golden fixture
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "stylegan3" / "nvlabs_networks.safetensors"
PRESET_OF = {("stylegan3-t", 256): "stylegan3-t-ffhqu-256", ("stylegan3-t", 1024): "stylegan3-t-ffhq-1024",
             ("stylegan3-r", 256): "stylegan3-r-ffhqu-256", ("stylegan3-r", 1024): "stylegan3-r-ffhq-1024",
             ("stylegan2", 256): "stylegan2-ffhqu-256", ("stylegan2", 1024): "stylegan2-ffhq-1024"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, device: torch.device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return out


def nvlabs_kwargs(config) -> dict:
    """The release's Generator arguments for one of our configs."""
    kw = dict(z_dim=config.z_dim, c_dim=config.num_classes, w_dim=config.w_dim, img_resolution=config.image_size,
              img_channels=config.channels, mapping_kwargs=dict(num_layers=config.mapping_layers),
              channel_base=config.channel_base, channel_max=config.channel_max, num_fp16_res=config.num_fp16_res,
              conv_clamp=config.conv_clamp)
    if config.is_stylegan3:
        kw.update(num_layers=config.num_layers, magnitude_ema_beta=config.magnitude_ema_beta,
                  conv_kernel=config.conv_kernel, use_radial_filters=config.use_radial_filters)
    return kw


def import_nvlabs(checkout: Path) -> types.SimpleNamespace:
    if not (checkout / "training" / "networks_stylegan3.py").is_file():
        raise UserError(f"--nvlabs {checkout} is not a checkout of github.com/NVlabs/stylegan3 (no "
                        "training/networks_stylegan3.py)")
    sys.path.insert(0, str(checkout))
    if "pkg_resources" not in sys.modules:  # the release asks setuptools for parse_version
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)
    import training.networks_stylegan2 as n2
    import training.networks_stylegan3 as n3

    return types.SimpleNamespace(stylegan2=n2, stylegan3=n3)


@cli_errors("benchmarks.stylegan3")
def main(argv: list[str] | None = None) -> dict:
    parser = ArgumentParser(prog="python -m benchmarks.stylegan3", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="stylegan3-t", choices=["stylegan3-t", "stylegan3-r", "stylegan2"])
    parser.add_argument("--sizes", default="256,1024", help="comma-separated resolutions: 256 and/or 1024")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward passes per implementation")
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes first")
    parser.add_argument("--nvlabs", type=Path, default=None, help="a checkout of NVlabs/stylegan3 to run side by side")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of our synthesis network")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--toy", action="store_true", help="a seconds-long run: the golden fixture's tiny network")
    args = parser.parse_args(argv)
    with cli_errors("benchmarks.stylegan3"):
        from models.gan.stylegan3.config import PRESETS
        from models.gan.stylegan3.model import StyleGANGenerator
        from utils.torch_utils import resolve_device

        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        nv = import_nvlabs(args.nvlabs) if args.nvlabs is not None else None
        results: dict = {"arch": args.arch, "device": str(device), "batch_size": args.batch_size, "sizes": {}}
        if args.toy:
            runs = [("fixture sg3t (tiny)", None)]
            args.batch_size, args.repeats, args.warmup = 2, 2, 1
        else:
            try:
                sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
            except ValueError:
                raise UserError(f"--sizes takes resolutions like 256,1024, got '{args.sizes}'") from None
            bad = [s for s in sizes if (args.arch, s) not in PRESET_OF]
            if bad or not sizes:
                raise UserError(f"--sizes takes 256 and/or 1024 (the official networks), got {args.sizes}")
            runs = [(PRESET_OF[(args.arch, s)], PRESETS[PRESET_OF[(args.arch, s)]]) for s in sizes]
        for name, config in runs:
            if config is None:  # the toy: the fixture's network, and the release's own output for it
                from safetensors import safe_open
                from safetensors.torch import load_file

                from models.gan.stylegan3.convert import config_from_nvlabs, convert_nvlabs

                tensors = load_file(FIXTURE)
                with safe_open(str(FIXTURE), "pt") as f:
                    kwargs = json.loads(f.metadata()["kwargs"])["sg3t"]
                config = config_from_nvlabs(kwargs, "stylegan3-t")
                ours = StyleGANGenerator(config).eval()
                ours.load_state_dict(convert_nvlabs({k[5:]: v for k, v in tensors.items() if k.startswith("sg3t.")},
                                                    config))
                ws_fixture, img_fixture = tensors["sg3t_io.ws"], tensors["sg3t_io.img"]
            else:
                torch.manual_seed(0)
                ours = StyleGANGenerator(config).eval()
            ours.to(device).requires_grad_(False)
            gen = torch.Generator().manual_seed(0)
            with torch.no_grad():
                z = torch.randn(args.batch_size, config.z_dim, generator=gen).to(device)
                ws = ours.map(z)
            row: dict = {"preset": name}
            ref = None
            if config is not None and nv is not None and not args.toy:
                module = nv.stylegan3 if config.is_stylegan3 else nv.stylegan2
                ref = module.Generator(**nvlabs_kwargs(config)).eval().requires_grad_(False).to(device)
                ref.load_state_dict(ours.state_dict())
            with torch.inference_mode():
                run_ours = lambda: ours.synthesize(ws, noise_mode="const")  # noqa: E731
                if args.toy:
                    row["max_abs_diff_vs_nvlabs"] = (ours.synthesize(ws_fixture.to(device)).cpu() - img_fixture).abs().max().item()
                fns = {"ours": run_ours}
                if ref is not None:
                    run_ref = lambda: ref.synthesis(ws, noise_mode="const")  # noqa: E731
                    row["max_abs_diff_vs_nvlabs"] = (run_ref().float() - run_ours().float()).abs().max().item()
                    fns["nvlabs"] = run_ref
                if args.compile:
                    compiled = torch.compile(ours.synthesis)
                    fns["ours_compiled"] = lambda: compiled(ws, noise_mode="const")
                    row["compiled_max_abs_diff"] = (fns["ours_compiled"]().float() - run_ours().float()).abs().max().item()
                for _ in range(args.warmup):
                    for fn in fns.values():
                        fn()
                times = {k: [] for k in fns}
                for _ in range(args.repeats):  # alternate, so drifts in machine load hit every one
                    for k, fn in fns.items():
                        times[k] += _median_time(fn, device, 1)
            for k, t in times.items():
                row[f"{k}_images_per_s"] = args.batch_size / statistics.median(t)
            results["sizes"][str(config.image_size)] = row
        where = f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                    f" ({torch.get_num_threads()} threads)")
        print(f"StyleGAN synthesis throughput, {args.arch if not args.toy else 'toy'}, batch {args.batch_size}, {where}")
        for size, row in results["sizes"].items():
            cells = [f"{k.removesuffix('_images_per_s')} {v:8.3f} images/s" for k, v in row.items()
                     if k.endswith("_images_per_s")]
            if "nvlabs_images_per_s" in row:
                cells.append(f"ours/nvlabs {row['ours_images_per_s'] / row['nvlabs_images_per_s']:.2f}x")
            if "max_abs_diff_vs_nvlabs" in row:
                cells.append(f"max abs diff vs NVlabs {row['max_abs_diff_vs_nvlabs']:.2e}")
            print(f"  {size:>5} px ({row['preset']}): " + ", ".join(cells))
        if args.json:
            print(json.dumps(results))
        return results


if __name__ == "__main__":
    main()
