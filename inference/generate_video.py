"""Generate a video with a video model of the zoo; each model has its own options (`--model NAME --help`).

    python inference/generate_video.py --model svd --preset tiny --image in.png --out clip.mp4   # random tiny weights
    python inference/generate_video.py --model svd --image in.png --num-frames 25 --fps 7 --motion-bucket-id 127 \\
        --noise-aug 0.02 --steps 30 --seed 0 --decode-chunk-size 8 --out clip.mp4                # SVD-XT (default)
    python inference/generate_video.py --model svd --prompt "a lighthouse in a storm" --image-model sdxl --out storm.mp4
    python inference/generate_video.py --model svd --image in.png --interpolate 2 --out smooth.mp4
    python inference/generate_video.py --model sora --preset tiny --prompt "a fox in snow" --out fox.mp4  # offline
    python inference/generate_video.py --model sora --prompt "a fox in snow" --num-frames 81 --out fox.mp4  # Wan 2.1 1.3B
    python inference/generate_video.py --model runway_gen3 --preset tiny --prompt "waves" --image sea.png \\
        --motion-mask water.png --motion right --out sea.mp4                                       # offline
    python inference/generate_video.py --model luma_dream --preset tiny --prompt "a fox" --out fox.mp4  # offline
    python inference/generate_video.py --model luma_dream --prompt "a fox in snow" --image fox.png --out fox.mp4 # LTX 0.9.5
    python inference/generate_video.py --model luma_dream --prompt "a fox in snow" --image fox.png \
        --keyframe fox_end.png:120:0.9 --out fox.mp4                          # first frame and a keyframe (LTX 0.9.5)

--out takes .mp4 (H.264, yuv420p), .webm, .gif, .webp, an image (.png: a preview grid of the frames),
or a folder (one PNG per frame); default outputs/videos/<model>_<preset>_seed<seed>.mp4.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

OUT_SUFFIXES = (".mp4", ".webm", ".gif", ".webp", ".png", ".jpg", ".jpeg")


def _check_image(path: str | None, flag: str) -> None:
    """A missing or unreadable image is one line, before any weights load."""
    if path is None:
        return
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise UserError(f"{flag} {path} not found: give the path of a .png or .jpg image")
    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, UnidentifiedImageError):
        raise UserError(f"{flag} {path} cannot be read as an image: give a .png or .jpg file") from None


def _out_path(args, name: str, preset: str) -> Path:
    from utils.io import check_output_path

    out = Path(args.out) if args.out else Path("outputs") / "videos" / f"{name}_{preset}_seed{args.seed}.mp4"
    if out.suffix and out.suffix.lower() not in OUT_SUFFIXES:
        raise UserError(f"--out {out}: a video is written as {', '.join(OUT_SUFFIXES)}, or a folder of frames")
    return check_output_path(out)


def add_run_args(p, per: str = "prompt", dtype: str = "fp16") -> None:
    """Videos, seed, device and precision, offload, threads, progress and --out: the same for every model."""
    p.add_argument("--num-videos", type=int, default=1, help=f"videos per {per} (video i uses seed + i)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same video (-1: random)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help=f"fp32, fp16 or bf16 (default: {dtype} on CUDA, fp32 on CPU)")
    p.add_argument("--offload", choices=("model", "sequential"), default=None,
                   help="CPU offload on CUDA: model (one model on the GPU at a time) or sequential (layer by layer)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--out", default=None, help="output .mp4/.webm/.gif/.webp, .png preview, or folder")


def _set_threads(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _save(video, out: Path, t0: float) -> int:
    """Writes the clip(s) and says where, how many frames, and how long the whole took."""
    written = video.save(out)
    where = written[0] if len(written) == 1 else out
    print(f"wrote {len(video.frames)} video(s) of {len(video.frames[0])} frames at {video.fps:g} fps to {where} "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0


# -- svd -----------------------------------------------------------------------------------------------

def add_svd_args(p) -> None:
    p.add_argument("--image", default=None, help="the image to animate (.png/.jpg); without it, --prompt makes one")
    p.add_argument("--prompt", default=None, help="text-to-video: make the first frame with --image-model, then "
                                                  "animate it")
    p.add_argument("--negative-prompt", default=None, help="what the image model steers away from")
    p.add_argument("--image-model", choices=("sdxl", "flux"), default="sdxl", help="the image model of --prompt")
    p.add_argument("--image-preset", default=None, help="its preset (default: tiny with --preset tiny, else its "
                                                        "default)")
    p.add_argument("--image-steps", type=int, default=None, help="its sampling steps (default: its preset's)")
    p.add_argument("--weights", default=None, help="official single file (svd_xt.safetensors), diffusers folder or "
                                                   "hub id (default: the preset's file)")
    p.add_argument("--preset", default=None, help="svd (14 frames), svd-xt (25, default), svd-xt-1.1, or tiny "
                                                  "(random weights, offline)")
    p.add_argument("--num-frames", type=int, default=None, help="frames to generate (default: the preset's)")
    p.add_argument("--fps", type=float, default=None, help="frames per second: the UNet is conditioned on fps - 1, "
                                                           "and the video plays at it (default 7)")
    p.add_argument("--motion-bucket-id", type=int, default=None, help="0..255: more means more motion (default 127)")
    p.add_argument("--noise-aug", type=float, default=None, help="noise added to the conditioning image: more frees "
                                                                 "the video from it (default 0.02)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: svd 25, svd-xt 30)")
    p.add_argument("--min-guidance", type=float, default=None, help="guidance on the first frame")
    p.add_argument("--max-guidance", type=float, default=None, help="guidance on the last frame (ramped linearly)")
    p.add_argument("--height", type=int, default=None, help="frame height, a multiple of 64 (default 576)")
    p.add_argument("--width", type=int, default=None, help="frame width, a multiple of 64 (default 1024)")
    p.add_argument("--decode-chunk-size", type=int, default=None, help="frames decoded at once: fewer need less "
                                                                       "memory (default 14)")
    p.add_argument("--interpolate", type=int, default=0, help="insert N frames between each pair (the fps is "
                                                              "multiplied by N + 1)")
    p.add_argument("--interpolation-strength", type=float, default=0.6, help="how much of the schedule the "
                                                                             "in-between frames are denoised from")
    add_run_args(p, per="image", dtype="fp16")


def run_svd(args) -> int:
    from models.registry import get_spec

    spec = get_spec("video", "svd")
    preset = spec.check_preset(args.preset)
    if args.image is None and args.prompt is None:
        raise UserError("give --image in.png to animate, or --prompt to make the first frame with --image-model")
    _check_image(args.image, "--image")
    if args.image is None and args.image_preset is not None:  # its name checked before SVD loads
        get_spec("image", args.image_model).check_preset(args.image_preset)
    if args.motion_bucket_id is not None and not 0 <= args.motion_bucket_id <= 1023:
        raise UserError(f"--motion-bucket-id must be in 0..255 (the release's range; up to 1023 accepted), got "
                        f"{args.motion_bucket_id}")
    if args.noise_aug is not None and args.noise_aug < 0:
        raise UserError(f"--noise-aug must be >= 0, got {args.noise_aug}")
    if args.interpolate < 0 or not 0 < args.interpolation_strength <= 1:
        raise UserError("--interpolate must be >= 0 and --interpolation-strength in (0, 1]")
    multiple = spec.default(preset, "pixel_multiple")
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and value % multiple:
            raise UserError(f"{flag} {value} is not a multiple of {multiple}: SVD ({preset}) makes frames whose sides "
                            f"are multiples of {multiple} pixels, e.g. {max(multiple, value // multiple * multiple)}")
    out = _out_path(args, "svd", preset)
    _set_threads(args)

    from models.video_generation.svd.pipeline import SVDPipeline

    t0 = time.perf_counter()
    pipe = SVDPipeline.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype,
                                       offload=args.offload)
    video = pipe(image=args.image, prompt=args.prompt if args.image is None else None,
                 negative_prompt=args.negative_prompt, num_frames=args.num_frames, height=args.height,
                 width=args.width, steps=args.steps, fps=args.fps, motion_bucket_id=args.motion_bucket_id,
                 noise_aug_strength=args.noise_aug, min_guidance=args.min_guidance, max_guidance=args.max_guidance,
                 decode_chunk_size=args.decode_chunk_size, num_videos=args.num_videos, seed=args.seed,
                 interpolate=args.interpolate, interpolation_strength=args.interpolation_strength,
                 image_model=args.image_model, image_preset=args.image_preset, image_steps=args.image_steps,
                 progress=not args.no_progress)
    return _save(video, out, t0)


# -- sora (the Wan 2.1 stand-in) -----------------------------------------------------------------------

def add_sora_args(p) -> None:
    p.add_argument("--prompt", default=None, help="what the clip shows (required)")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (default: the release's)")
    p.add_argument("--image", default=None, help="image-to-video: the first frame (.png/.jpg), with an i2v preset "
                                                 "or wan2.2-ti2v-5b (optional there)")
    p.add_argument("--weights", default=None, help="diffusers folder (Wan-AI/Wan2.1-*-Diffusers, "
                                                   "Wan-AI/Wan2.2-TI2V-5B-Diffusers), the official release's folder, "
                                                   "or a hub id (default: the preset's repo)")
    p.add_argument("--preset", default=None, help="wan2.1-t2v-1.3b (default), wan2.1-t2v-14b, wan2.1-i2v-14b-480p, "
                                                  "wan2.2-ti2v-5b, or tiny (random weights, offline)")
    p.add_argument("--num-frames", type=int, default=None, help="frames, 1 + 4k (default 81; wan2.2-ti2v-5b 121)")
    p.add_argument("--height", type=int, default=None, help="frame height, a multiple of 16, 32 for wan2.2-ti2v-5b "
                                                            "(default 480, 5b 704; i2v: from the image's aspect ratio)")
    p.add_argument("--width", type=int, default=None, help="frame width, a multiple of 16, 32 for wan2.2-ti2v-5b "
                                                           "(default 832, 5b 1280)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default 50, i2v 40)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 5.0)")
    p.add_argument("--shift", type=float, default=None, help="flow-matching schedule shift (default 5.0, 480p i2v 3.0)")
    p.add_argument("--fps", type=float, default=None, help="playback rate of the written clip (default 16; 5b 24)")
    p.add_argument("--decode-chunk-size", type=int, default=1, help="latent frames the causal VAE decodes at once "
                                                                    "(more: faster, more memory)")
    p.add_argument("--prompt-extender", default=None, help="folder of a local causal text model that rewrites the "
                                                           "prompt into a detailed caption first (nothing is downloaded)")
    p.add_argument("--vae-tiling", action="store_true", help="decode large frames in overlapping spatial tiles "
                                                             "(less memory; seams blended)")
    add_run_args(p, dtype="bf16")


def run_sora(args) -> int:
    from models.registry import get_spec

    spec = get_spec("video", "sora")
    preset = spec.check_preset(args.preset)
    if not args.prompt:
        raise UserError("give --prompt: it describes the clip to generate")
    _check_image(args.image, "--image")
    frames = args.num_frames
    if frames is not None and (frames - 1) % 4:
        below = 1 + 4 * ((frames - 1) // 4)
        raise UserError(f"--num-frames {frames}: Wan generates 1 + 4k frames (5, 9, ..., 81): use {below} or {below + 4}")
    multiple = spec.default(preset, "pixel_multiple")
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and value % multiple:
            raise UserError(f"{flag} {value} is not a multiple of {multiple}: Wan ({preset}) makes frames whose sides "
                            f"are multiples of {multiple} pixels, e.g. {max(multiple, value // multiple * multiple)}")
    if args.prompt_extender is not None and not Path(args.prompt_extender).is_dir():
        raise UserError(f"--prompt-extender {args.prompt_extender} is not a folder: give a local text model's folder")
    out = _out_path(args, "sora", preset)
    _set_threads(args)

    from models.video_generation.sora.pipeline import WanPipeline

    t0 = time.perf_counter()
    pipe = WanPipeline.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype,
                                       offload=args.offload, vae_tiling=args.vae_tiling)
    video = pipe(prompt=args.prompt, negative_prompt=args.negative_prompt, image=args.image, num_frames=frames,
                 height=args.height, width=args.width, steps=args.steps, guidance_scale=args.guidance,
                 shift=args.shift, fps=args.fps, decode_chunk_size=args.decode_chunk_size,
                 prompt_extender=args.prompt_extender, num_videos=args.num_videos, seed=args.seed,
                 progress=not args.no_progress)
    return _save(video, out, t0)


# -- runway_gen3 (the AnimateDiff stand-in) -------------------------------------------------------------

def add_runway_gen3_args(p) -> None:
    p.add_argument("--prompt", required=True, help="what the clip shows")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from")
    p.add_argument("--image", default=None, help="image-to-video: the still whose latents pin frame 0 (.png/.jpg)")
    p.add_argument("--image-strength", type=float, default=1.0, help="how hard frame 0 is pinned to --image, "
                                                                     "0..1 (default 1: exactly the image)")
    p.add_argument("--video", default=None, help="video-to-video: the clip (video file or folder of frames) noised "
                                                 "to --strength and denoised")
    p.add_argument("--strength", type=float, default=None, help="with --video: how much of the schedule is redone, "
                                                                "0..1 (default 0.8)")
    p.add_argument("--motion-mask", default=None, help="motion brush: a PNG over --image, white = the region that "
                                                       "moves (the same width and height as the image)")
    p.add_argument("--motion", default=None, help="the brush's motion: left, right, up, down, zoom-in, zoom-out or "
                                                  "dx,dy in pixels per second (a negative dx: --motion=-20,0; "
                                                  "default: free motion inside the mask)")
    p.add_argument("--motion-strength", type=float, default=1.0, help="scales the brush's motion (default 1)")
    p.add_argument("--control-video", default=None, help="performance transfer: a driving video whose per-frame "
                                                         "maps steer the ControlNet (at least --num-frames frames)")
    p.add_argument("--control", default=None, help="the maps made from --control-video: canny, depth or pose "
                                                   "(pose: the video is an OpenPose rendering); without it the "
                                                   "video's frames are the maps (needs --controlnet)")
    p.add_argument("--controlnet", default=None, help="a ControlNet for the base model (file, folder or hub id; "
                                                      "default: the release for --control)")
    p.add_argument("--control-scale", type=float, default=1.0, help="the ControlNet's weight, 0..10 (default 1)")
    p.add_argument("--weights", default=None, help="the motion adapter: mm_sd_v15_v2.ckpt / v3_sd15_mm.ckpt, a "
                                                   "diffusers MotionAdapter folder or hub id (default: the preset's)")
    p.add_argument("--base", default=None, help="the image model it animates: single file, diffusers folder or hub "
                                                "id (default stable-diffusion-v1-5/stable-diffusion-v1-5; "
                                                "sdxl-beta: stabilityai/stable-diffusion-xl-base-1.0)")
    p.add_argument("--preset", default=None, help="v15-v2 (default), v15-v3, sdxl-beta (on SDXL), or tiny / "
                                                  "tiny-sdxl (random weights, offline)")
    p.add_argument("--num-frames", type=int, default=None, help="frames (default 16; at most the adapter's 32)")
    p.add_argument("--height", type=int, default=None, help="frame height (default 512)")
    p.add_argument("--width", type=int, default=None, help="frame width (default 512)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default 25)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 7.5)")
    p.add_argument("--scheduler", default=None, help="sampler (default: DDIM over AnimateDiff's linear betas)")
    p.add_argument("--fps", type=float, default=None, help="playback rate; also the brush's seconds (default 8)")
    p.add_argument("--decode-chunk-size", type=int, default=None, help="frames the VAE decodes at once")
    add_run_args(p, dtype="fp16")


def _check_clip(path: str | None, flag: str) -> None:
    if path is not None and not Path(path).exists():
        raise UserError(f"{flag} {path} not found: give a video file (.mp4, .webm, .gif) or a folder of frames")


def run_runway_gen3(args) -> int:
    from models.registry import get_spec

    spec = get_spec("video", "runway_gen3")
    preset = spec.check_preset(args.preset)
    _check_image(args.image, "--image")
    _check_image(args.motion_mask, "--motion-mask")
    _check_clip(args.video, "--video")
    _check_clip(args.control_video, "--control-video")
    kinds = ("canny", "depth", "pose")
    if args.control is not None and args.control not in kinds:
        raise UserError(f"--control {args.control}: the kind of map made from --control-video, one of "
                        f"{', '.join(kinds)}")
    if args.strength is not None and args.video is None:
        raise UserError("--strength is video-to-video's: give --video (for an image, --image-strength)")
    if args.motion_mask is not None and args.image is None:
        raise UserError("--motion-mask paints over a still: give --image too")
    if args.motion is not None and args.motion_mask is None:
        raise UserError("--motion needs --motion-mask (white = the region that moves)")
    if (args.control is not None or args.controlnet is not None) and args.control_video is None:
        raise UserError("--control / --controlnet steer each frame by a driving video: give --control-video")
    if args.motion_mask is not None:
        from PIL import Image

        with Image.open(args.motion_mask) as m, Image.open(args.image) as im:
            if m.size != im.size:
                raise UserError(f"--motion-mask is {m.width}x{m.height}, --image {im.width}x{im.height}: paint the "
                                "mask over the image itself (same width and height)")
    multiple = spec.default(preset, "pixel_multiple")
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and value % multiple:
            raise UserError(f"{flag} {value} is not a multiple of {multiple}: AnimateDiff on SD 1.5 ({preset}) makes "
                            f"frames whose sides are multiples of {multiple}, e.g. "
                            f"{max(multiple, value // multiple * multiple)}")
    out = _out_path(args, "runway_gen3", preset)
    _set_threads(args)

    from models.video_generation.runway_gen3.pipeline import RunwayGen3Pipeline

    t0 = time.perf_counter()
    pipe = RunwayGen3Pipeline.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype,
                                              offload=args.offload, base=args.base, controlnet=args.controlnet)
    video = pipe(prompt=args.prompt, negative_prompt=args.negative_prompt, num_frames=args.num_frames,
                 height=args.height, width=args.width, steps=args.steps, guidance=args.guidance,
                 scheduler=args.scheduler, fps=args.fps, num_videos=args.num_videos, image=args.image,
                 image_strength=args.image_strength, video=args.video, strength=args.strength,
                 motion_mask=args.motion_mask, motion=args.motion, motion_strength=args.motion_strength,
                 control=args.control, control_video=args.control_video, control_scale=args.control_scale,
                 decode_chunk_size=args.decode_chunk_size, seed=args.seed, progress=not args.no_progress)
    return _save(video, out, t0)


# -- luma_dream (the LTX-Video stand-in) ---------------------------------------------------------------

def add_luma_dream_args(p) -> None:
    p.add_argument("--prompt", default=None, help="what the clip shows (required)")
    p.add_argument("--negative-prompt", default=None, help="what to steer away from (default: the release's)")
    p.add_argument("--image", default=None, help="image-to-video: the first frame (.png/.jpg), kept through sampling")
    p.add_argument("--keyframe", action="append", default=None, metavar="PATH[:FRAME[:STRENGTH]]",
                   help="condition on an image at FRAME (default: the last frame; a multiple of 8, tiny: 2) with "
                        "STRENGTH in [0, 1] (default --strength); repeatable, e.g. --keyframe end.png:120:0.9")
    p.add_argument("--video", action="append", default=None, metavar="PATH[:FRAME[:STRENGTH]]",
                   help="condition on a short clip (video file, .gif, or frame folder) starting at FRAME (default 0), "
                        "its first 1 + 8k frames that fit; repeatable")
    p.add_argument("--strength", type=float, default=None, help="conditioning strength in [0, 1] of --keyframe, "
                                                                "--video (and --image with them) that give none "
                                                                "(default 1: exactly the condition)")
    p.add_argument("--weights", default=None, help="official single file (ltx-video-2b-v0.9*.safetensors), diffusers "
                                                   "folder (Lightricks/LTX-Video) or hub id (default: the preset's file)")
    p.add_argument("--text-encoder", default=None, help="T5-XXL for a single file: a folder or hub id with "
                                                        "text_encoder/ and tokenizer/ (default: Lightricks/LTX-Video)")
    p.add_argument("--preset", default=None, help="ltxv-2b-0.9, ltxv-2b-0.9.1, ltxv-2b-0.9.5 (default), "
                                                  "ltxv-2b-0.9.6-distilled (8 steps), or tiny (random weights, offline)")
    p.add_argument("--num-frames", type=int, default=None, help="frames, 1 + 8k (default 121; tiny: 1 + 2k)")
    p.add_argument("--height", type=int, default=None, help="frame height, a multiple of 32 (default 512)")
    p.add_argument("--width", type=int, default=None, help="frame width, a multiple of 32 (default 704)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default 40; distilled: 8)")
    p.add_argument("--timesteps", default=None, help="comma-separated fixed sigmas in (0, 1], decreasing (the "
                                                     "distilled preset's 8 by default there)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 3.0; "
                                                                "distilled 1.0)")
    p.add_argument("--fps", type=float, default=None, help="frame rate: conditions the positions and the written "
                                                           "clip (default 25)")
    p.add_argument("--decode-timestep", type=float, default=None, help="0.9.1+ VAEs: decode timestep (default 0.05)")
    p.add_argument("--decode-noise-scale", type=float, default=None, help="0.9.1+ VAEs: fresh noise mixed in before "
                                                                          "decoding (default 0.025)")
    p.add_argument("--camera", default=None, help="camera motion: a preset (orbit, orbit-left, pan-left, pan-right, "
                                                  "tilt-up, tilt-down, dolly-in, dolly-out, zoom-in, zoom-out, static) "
                                                  "or a .json camera path; needs a camera adapter")
    p.add_argument("--camera-adapter", default=None, help="the camera adapter .safetensors (default: what "
                                                          "train_video.py --model luma_dream --camera wrote, "
                                                          "outputs/luma_dream/<preset>-camera/camera_adapter.safetensors)")
    p.add_argument("--camera-scale", type=float, default=1.0, help="camera guidance: > 1 pushes the clip away from "
                                                                   "the camera-free prediction (one more transformer "
                                                                   "call a step; the tiny proof uses 4); default 1")
    p.add_argument("--preview", default=None, help="folder: write each step's live preview (the linear "
                                                   "latent-to-RGB map) as step_NNN.png")
    p.add_argument("--vae-tiling", action="store_true", help="decode in overlapping 512-pixel tiles (less memory)")
    add_run_args(p, dtype="bf16")


def _luma_timesteps(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--timesteps {text}: give comma-separated numbers, e.g. 1.0,0.9094,0.725,0.4219") from None
    if not values or any(not 0 < v <= 1 for v in values) or any(a <= b for a, b in zip(values, values[1:])):
        raise UserError(f"--timesteps {text}: the sigmas must decrease within (0, 1], e.g. 1.0,0.9094,0.725,0.4219")
    return values


def run_luma_dream(args) -> int:
    from models.registry import get_spec

    spec = get_spec("video", "luma_dream")
    preset = spec.check_preset(args.preset)
    if not args.prompt:
        raise UserError("give --prompt: it describes the clip to generate")
    _check_image(args.image, "--image")
    step = spec.default(preset, "frame_multiple")
    frames = args.num_frames
    if frames is not None and (frames < 1 or (frames - 1) % step):
        below = max(1, 1 + step * ((frames - 1) // step))
        raise UserError(f"--num-frames {frames}: LTX-Video ({preset}) generates 1 + {step}k frames: use {below} or "
                        f"{below + step}")
    multiple = spec.default(preset, "pixel_multiple")
    for flag, value in (("--height", args.height), ("--width", args.width)):
        if value is not None and (value < multiple or value % multiple):
            raise UserError(f"{flag} {value} is not a multiple of {multiple}: LTX-Video ({preset}) makes frames whose "
                            f"sides are multiples of {multiple} pixels, e.g. {max(multiple, value // multiple * multiple)}")
    timesteps = _luma_timesteps(args.timesteps)
    conditions = _luma_conditions(args, spec, preset, frames)
    camera_adapter = _luma_camera(args, spec, preset, frames)
    out = _out_path(args, "luma_dream", preset)
    _set_threads(args)

    from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

    t0 = time.perf_counter()
    pipe = LTXVideoPipeline.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype,
                                            text_encoder=args.text_encoder, offload=args.offload,
                                            vae_tiling=args.vae_tiling)
    if camera_adapter is not None:
        pipe.load_camera_adapter(camera_adapter)
    callback = None
    if args.preview is not None:
        from utils.visualization.grid import to_pil

        folder = Path(args.preview)
        folder.mkdir(parents=True, exist_ok=True)
        scale = pipe.vae.config.spatial_ratio

        def callback(i, total, frames):  # the first video's latent frames side by side, upscaled to pixels
            import torch

            row = torch.cat(list(frames[0]), dim=-1)[None].repeat_interleave(scale, -1).repeat_interleave(scale, -2)
            to_pil(row, value_range=(0.0, 1.0))[0].save(folder / f"step_{i:03d}.png")

    video = pipe(prompt=args.prompt, negative_prompt=args.negative_prompt,
                 image=None if conditions else args.image, conditions=conditions, num_frames=frames,
                 height=args.height, width=args.width, steps=args.steps, timesteps=timesteps,
                 guidance_scale=args.guidance, fps=args.fps, decode_timestep=args.decode_timestep,
                 decode_noise_scale=args.decode_noise_scale, num_videos=args.num_videos, seed=args.seed,
                 callback=callback, camera=args.camera, camera_scale=args.camera_scale, progress=not args.no_progress)
    return _save(video, out, t0)


def _condition_spec(text: str, flag: str) -> tuple[str, int | None, float | None]:
    """PATH[:FRAME[:STRENGTH]] -> (path, frame or None, strength or None); a path that exists as written wins."""
    def number(kind, value):
        try:
            return kind(value)
        except ValueError:
            return None

    if Path(text).exists() or ":" not in text:
        return text, None, None
    head, _, last = text.rpartition(":")
    path, _, middle = head.rpartition(":")
    if path and number(int, middle) is not None and number(float, last) is not None:
        return path, int(middle), float(last)
    if number(int, last) is not None:
        return head, int(last), None
    raise UserError(f"{flag} {text}: give PATH[:FRAME[:STRENGTH]], FRAME a whole frame number and STRENGTH in [0, 1], "
                    f"e.g. {flag} end.png:120:0.9")


def _luma_conditions(args, spec, preset: str, frames: int | None) -> list | None:
    """--keyframe / --video (and --image alongside them) as checked VideoConditions, before any weights load:
    the files read, frames inside the clip on the VAE's frame multiple, strengths in [0, 1]."""
    if args.strength is not None and not 0 <= args.strength <= 1:
        raise UserError(f"--strength {args.strength:g}: a conditioning strength is in [0, 1] (1: exactly the condition)")
    if not args.keyframe and not args.video:
        if args.strength is None:
            return None
        if args.image is None:
            raise UserError("--strength sets how hard --image, --keyframe or --video pull the clip: give one of them")
    from models.video_generation.luma_dream.conditions import VideoCondition, check_conditions
    from utils.data.video import video_problem

    num = frames or int(spec.default(preset, "num_frames"))
    default = 1.0 if args.strength is None else args.strength
    items = []
    if args.image is not None:  # already checked as an image
        items.append(VideoCondition(image=args.image, frame_index=0, strength=default))
    for flag, specs in (("--keyframe", args.keyframe or []), ("--video", args.video or [])):
        for text in specs:
            path, frame, strength = _condition_spec(text, flag)
            if strength is not None and not 0 <= strength <= 1:
                raise UserError(f"{flag} {text}: STRENGTH {strength:g} is outside [0, 1] (1: exactly the condition)")
            if flag == "--keyframe":
                _check_image(path, flag)
                frame = num - 1 if frame is None else frame
            else:
                problem = video_problem(path)
                if problem is not None:
                    raise UserError(f"{flag} {path}: {problem}: give a video file (.mp4, .webm, .gif) or a folder of "
                                    "frames")
                frame = 0 if frame is None else frame
            cond = VideoCondition(**{"image" if flag == "--keyframe" else "video": path}, frame_index=frame,
                                  strength=default if strength is None else strength)
            try:
                check_conditions([cond], num, int(spec.default(preset, "frame_multiple")))
            except UserError as err:
                raise UserError(f"{flag} {text}: {err}") from None
            items.append(cond)
    return items


def _luma_camera(args, spec, preset: str, frames: int | None) -> Path | None:
    """--camera checked (preset name or camera JSON) and its adapter file found, before any weights load."""
    if not args.camera_scale >= 0:
        raise UserError(f"--camera-scale must be >= 0, got {args.camera_scale:g}")
    if args.camera is None:
        if args.camera_adapter is not None:
            raise UserError("--camera-adapter steers the camera of --camera: give --camera too (e.g. --camera orbit)")
        return None
    from models.video_generation.luma_dream.camera import camera_path
    from models.video_generation.luma_dream.camera_adapter import load_camera_adapter

    num = frames or int(spec.default(preset, "num_frames"))
    h, w = int(args.height or spec.default(preset, "height")), int(args.width or spec.default(preset, "width"))
    camera_path(args.camera, num, w, h)
    path = Path(args.camera_adapter) if args.camera_adapter else \
        Path("outputs") / "luma_dream" / f"{preset}-camera" / "camera_adapter.safetensors"
    if not path.is_file():
        raise UserError(f"--camera needs a camera adapter: {path} not found (train one with train/train_video.py "
                        f"--model luma_dream --preset {preset} --camera, or pass --camera-adapter FILE)")
    load_camera_adapter(path)  # a broken or foreign file fails here, not after the model loads
    return path


# -- dispatch ------------------------------------------------------------------------------------------

# registry name -> (adds the model's options, runs it). A new video model adds its two functions and one entry.
RUNNERS = {
    "svd": (add_svd_args, run_svd),
    "sora": (add_sora_args, run_sora),
    "runway_gen3": (add_runway_gen3_args, run_runway_gen3),
    "luma_dream": (add_luma_dream_args, run_luma_dream),
}


def build_parser(model: str | None = "svd") -> ArgumentParser:
    p = ArgumentParser(prog="generate_video.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="svd", help=f"video model: {', '.join(RUNNERS)}")
    if model in RUNNERS:
        RUNNERS[model][0](p.add_argument_group(f"{model} options"))
    return p.add_limits("video")


def main(argv: list[str] | None = None) -> int:
    from models.registry import get_spec

    argv = sys.argv[1:] if argv is None else list(argv)
    peek = ArgumentParser(prog="generate_video.py", add_help=False)
    peek.add_argument("--model", default="svd")
    model = get_spec("video", peek.parse_known_args(argv)[0].model).name
    if model not in RUNNERS:
        raise UserError(f"generate_video.py cannot run '{model}' yet: it runs {', '.join(RUNNERS)}")
    if model != "luma_dream" and any(a == "--camera" or a.startswith("--camera=") for a in argv):
        raise UserError(f"--camera is luma_dream's (camera motion through its camera adapter): {model} has no camera "
                        "control")
    args = build_parser(model).parse_args(argv)
    args.model = model
    return RUNNERS[model][1](args)


if __name__ == "__main__":
    with cli_errors("generate_video.py"):
        sys.exit(main())
