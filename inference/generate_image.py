"""Generate images with any image or GAN model of the zoo.

    python inference/generate_image.py                      # the shipped DCGAN digits model, offline
    python inference/generate_image.py --model dcgan --prompt 7 --num-images 16 --out sevens.png
    python inference/generate_image.py --model flux --prompt "a red fox in snow"

Only the options given are passed to the model, and each model checks them: an option a model
does not take is a clear error, never silently ignored.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.outputs import IMAGE_SUFFIXES
from models.registry import find_spec, specs
from utils.cli import ArgumentParser, check_limits
from utils.errors import UserError, cli_errors
from utils.io import check_output_path

MODALITIES = ("image", "gan")
DEFAULT_MODEL = "dcgan"


def _xy(text: str) -> tuple[float, float]:
    """'0.1,-0.2' -> (0.1, -0.2)."""
    import argparse

    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got '{text}'") from None
    return x, y


def build_parser() -> ArgumentParser:
    names = [s.name for m in MODALITIES for s in specs(m)]
    p = ArgumentParser(prog="generate_image.py", description="Generate images with a model of the zoo.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"one of: {', '.join(names)}")
    p.add_argument("--weights", default=None, help="local file or folder, or hub repo id (default: the preset's)")
    p.add_argument("--preset", default=None, help="model preset; 'tiny' runs with random weights")
    p.add_argument("--prompt", default=None, help="text prompt (a class name for class-conditional GANs)")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (diffusion models)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same image")
    p.add_argument("--num-images", type=int, default=None, help="how many images (default: the model's)")
    p.add_argument("--height", type=int, default=None, help="image height in pixels")
    p.add_argument("--width", type=int, default=None, help="image width in pixels")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (diffusion models)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (diffusion models)")
    p.add_argument("--scheduler", default=None, help="sampler by name (diffusion models)")
    p.add_argument("--image", default=None, help="input image for img2img, inpainting or control")
    p.add_argument("--mask", default=None, help="inpainting mask (white = repaint)")
    p.add_argument("--control", default=None,
                   help="FLUX canny/depth presets: the control image file; SD 1.5 / SDXL: the ControlNet's kind "
                        "(canny, depth, pose) with --control-image")
    p.add_argument("--control-image", default=None,
                   help="with --control KIND (SD 1.5, SDXL): a photo (canny: its edges are found), a grey depth map "
                        "(or a photo, when a depth estimator is in the local cache) or an OpenPose rendering")
    p.add_argument("--control-scale", type=float, default=None,
                   help="ControlNet conditioning scale in [0, 10] (default 1)")
    p.add_argument("--controlnet", default=None,
                   help="ControlNet weights: a file (control_v11p_sd15_canny.pth, official or diffusers layout), a "
                        "diffusers folder or a hub repo id (default: the kind's release; random with --preset tiny)")
    p.add_argument("--strength", type=float, default=None, help="img2img strength in (0, 1]")
    p.add_argument("--elevation", type=float, default=None, help="camera elevation in degrees (3D-aware GANs: aetherist)")
    p.add_argument("--azimuth", type=float, default=None, help="camera azimuth in degrees, 0 = front (aetherist)")
    p.add_argument("--radius", type=float, default=None, help="camera distance from the pivot (aetherist)")
    p.add_argument("--fov", type=float, default=None, help="camera field of view in degrees (aetherist)")
    p.add_argument("--truncation", type=float, default=None,
                   help="truncation psi of a latent GAN (StyleGAN: 0.7 is usual, 1 is none; BigGAN: 0.4)")
    p.add_argument("--translate", type=_xy, default=None, metavar="X,Y",
                   help="move the output by X,Y image widths/heights (StyleGAN3, StyleGAN2)")
    p.add_argument("--rotate", type=float, default=None, help="rotate the output by this many degrees (StyleGAN3)")
    p.add_argument("--noise-mode", default=None, choices=["const", "random", "none"],
                   help="StyleGAN2's per-pixel noise: stored (const), fresh (random) or none")
    p.add_argument("--stages", type=int, default=None, choices=[1, 2, 3],
                   help="Imagen: the last cascade stage to run (1: 64 px, 2: 256 px, 3: 1024 px)")
    p.add_argument("--rewrite-model", default=None,
                   help="DALL-E 3: a local causal LM (repo id or folder) that rewrites the prompt (default: a template)")
    p.add_argument("--decoder", default=None, choices=["consistency", "vae"],
                   help="DALL-E 3: decode with OpenAI's consistency decoder (4-channel latents: --fast) or the VAE")
    p.add_argument("--fast", action="store_true", default=None,
                   help="DALL-E 3: few-step mode (SDXL + LCM-LoRA, 4 steps)")
    p.add_argument("--lora", action="append", default=None, metavar="PATH[:SCALE]",
                   help="a LoRA file to apply (diffusers, kohya, BFL, XLabs; train_diffusion.py writes one), "
                        "at SCALE (default 1); repeat to stack several (diffusion models)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: the model's for the device)")
    p.add_argument("--out", default=None,
                   help="output file (.png/.jpg/.webp; several images make a grid) or folder "
                        "(default: outputs/images/<model>_<preset>_seed<seed>.png)")
    return p.add_limits()


CALL_OPTIONS = ("prompt", "negative_prompt", "num_images", "height", "width", "steps", "guidance", "scheduler",
                "image", "mask", "control", "control_image", "control_scale", "strength", "truncation", "translate", "rotate", "noise_mode", "stages",
                "rewrite_model", "decoder", "fast", "elevation", "azimuth", "radius", "fov")


def lora_source(text: str) -> tuple[str, float]:
    """'path[:scale]' -> (path, scale); a tail that is not a number belongs to the path (a hub 'repo:file')."""
    source, _, tail = text.rpartition(":")
    try:
        scale = float(tail)
    except ValueError:
        return text, 1.0
    if not source:
        raise UserError(f"--lora {text}: give the file before the scale, e.g. --lora my_lora.safetensors:0.8")
    return source, scale


def check_options(spec, kwargs: dict) -> None:
    """Refuse, before any weights load, an option the model's call does not name."""
    import inspect

    params = inspect.signature(spec.pipeline_class().__call__).parameters
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    for key in kwargs:
        if key not in named:
            flag = "--" + key.replace("_", "-")
            raise UserError(f"{spec.name} does not take {flag}: leave it out (see the model's README for its options)")


def check_control(args) -> None:
    """--control is a kind (canny, depth, pose) with --control-image, or a control image file (FLUX)."""
    from utils.preprocess.control import CONTROL_KINDS

    kinds = ", ".join(CONTROL_KINDS)
    if args.control_image is not None and args.control is None:
        raise UserError(f"--control-image needs --control KIND ({kinds})")
    if args.control_image is not None and args.control not in CONTROL_KINDS:
        raise UserError(f"--control {args.control} with --control-image: --control names the kind, one of {kinds}")
    if args.control in CONTROL_KINDS and args.control_image is None:
        raise UserError(f"--control {args.control} needs --control-image PATH (the image it is made from)")


def main(argv: list[str] | None = None) -> None:
    with cli_errors("generate_image.py"):
        args = build_parser().parse_args(argv)
        spec = find_spec(args.model, MODALITIES)
        preset = spec.check_preset(args.preset)
        check_limits(args, spec.modality)
        out = Path(args.out or f"outputs/images/{spec.name}_{preset}_seed{args.seed}.png")
        if out.suffix and out.suffix.lower() not in IMAGE_SUFFIXES:
            raise UserError(f"--out must end in one of {', '.join(sorted(IMAGE_SUFFIXES))}, or be a folder")
        check_output_path(out)
        check_control(args)
        for name in ("image", "mask", "control", "control_image"):
            value = getattr(args, name)
            if name == "control" and args.control_image is not None:
                continue  # the kind, checked above
            flag = "--" + name.replace("_", "-")
            if value is not None and not Path(value).is_file():
                raise UserError(f"{flag} file not found: {value}")
            if value is not None:
                from utils.data.image_folder import check_images

                check_images([Path(value)], flag)

        kwargs = {k: getattr(args, k) for k in CALL_OPTIONS if getattr(args, k) is not None}
        check_options(spec, kwargs)
        loras = [lora_source(text) for text in args.lora or ()]
        if loras and not hasattr(spec.pipeline_class(), "load_lora"):
            raise UserError(f"{spec.name} does not take --lora (LoRA files are for the diffusion models): leave it out")
        if args.controlnet is not None and not hasattr(spec.pipeline_class(), "load_controlnet"):
            raise UserError(f"{spec.name} does not take --controlnet (ControlNets are for sd15 and sdxl): leave it out")
        if args.controlnet is not None and args.control is None:
            raise UserError("--controlnet needs --control KIND and --control-image (what steers it)")

        import models

        t0 = time.perf_counter()
        pipe = models.load(spec.modality, spec.name, weights=args.weights, preset=args.preset,
                           device=args.device, dtype=args.dtype)
        for source, scale in loras:
            pipe.load_lora(source, scale)
        if args.controlnet is not None:
            pipe.load_controlnet(args.controlnet)
        result = pipe(seed=args.seed, **kwargs)
        written = result.save(out)
        where = written[0] if len(written) == 1 else out
        print(f"wrote {len(result.images)} image(s) to {where} in {time.perf_counter() - t0:.1f}s")
        for revised in dict.fromkeys(getattr(result, "revised_prompts", None) or ()):
            print(f"prompt as rewritten: {revised}")


if __name__ == "__main__":
    main()
