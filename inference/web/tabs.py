"""The demo's tabs, built from the registry: generate, interpolate, latents, camera, video.

Each tab lists the served models it applies to and shows only the controls the chosen model's
call takes. Every result shows its settings and the equivalent command line or Python call.
"""
from __future__ import annotations

import functools
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from inference.web.catalog import ModelInfo
from inference.web.media import video_bytes
from inference.web.service import Request, Result, Service
from utils.errors import UserError, short_reason
from utils.outputs import ImageOutput


def ui_errors(fn: Callable) -> Callable:
    """A user mistake (or a full queue) as the page's one-line error, never a traceback."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as err:
            raise gr.Error(str(err)) from None
        except Exception as err:  # noqa: BLE001 - shown as one line; the server keeps serving
            raise gr.Error(f"internal error ({type(err).__name__}: {short_reason(err)})") from None

    return wrapped


def progress_of(progress: gr.Progress) -> Callable[[float, str], None]:
    return lambda fraction, desc: progress(fraction, desc=desc)


def choices(infos: list[ModelInfo]) -> list[tuple[str, str]]:
    return [(f"{i.spec.name} ({i.spec.modality})", i.key) for i in infos]


def _int(value: Any) -> int | None:
    """A number field: 0 or empty means 'the model's default'."""
    return int(value) if value not in (None, "") and int(value) > 0 else None


class Tabs:
    """The tabs of one app; their files go to a private temporary folder."""

    def __init__(self, service: Service):
        self.service = service
        self.catalog = service.catalog
        self.limits = service.settings.limits
        self.tmp = Path(tempfile.mkdtemp(prefix="cvg-web-"))

    keep_s = 3600.0
    """How long a result's files stay in the private folder (gradio keeps its own copies for the page)."""

    def file(self, suffix: str) -> Path:
        """A new file name in the private folder; files older than `keep_s` are removed on the way."""
        now = time.time()
        for old in self.tmp.iterdir():
            try:
                if now - old.stat().st_mtime > self.keep_s:
                    old.unlink()
            except FileNotFoundError:
                pass
        return self.tmp / f"{uuid.uuid4().hex[:12]}{suffix}"

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _default(self, infos: list[ModelInfo]) -> str | None:
        keys = [i.key for i in infos]
        return self.catalog.default if self.catalog.default in keys else (keys[0] if keys else None)

    def _preset_choices(self, key: str | None) -> dict:
        """The presets of a model and its default, as Dropdown arguments."""
        if not key:
            return {"choices": [], "value": None}
        spec = self.catalog.info(key).spec
        return {"choices": list(spec.presets), "value": spec.default_preset}

    def _presets(self, key: str | None) -> dict:
        """The preset Dropdown's update when the model changes."""
        return gr.update(**self._preset_choices(key))

    # -- generate ----------------------------------------------------------------------------------

    def generate_tab(self) -> None:
        infos = self.catalog.of("image") + self.catalog.of("gan")
        if not infos:
            return
        first = self._default(infos)
        with gr.Tab("Generate", id="generate", elem_id="tab-generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(choices(infos), value=first, label="Model", elem_id="gen-model")
                    preset = gr.Dropdown(**self._preset_choices(first), label="Preset", elem_id="gen-preset")
                    prompt = gr.Textbox(label="Prompt or class", placeholder="a class name (digits: 0-9) or a text "
                                        "prompt; empty: the model's choice", elem_id="gen-prompt")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="gen-seed")
                    count = gr.Slider(1, self.limits.max_images, value=min(4, self.limits.max_images), step=1,
                                      label="Number of images", elem_id="gen-count")
                    with gr.Row():
                        steps = gr.Number(0, precision=0, minimum=0, label="Steps (0: default)", elem_id="gen-steps")
                        size = gr.Number(0, precision=0, minimum=0, label="Size (0: default)", elem_id="gen-size")
                    truncation = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Truncation (1: none)",
                                           elem_id="gen-truncation")
                    image = gr.Image(type="pil", label="Input image (image-to-image models)", visible=False,
                                     elem_id="gen-image")
                    button = gr.Button("Generate", variant="primary", elem_id="gen-button")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Result", format="png", columns=4, elem_id="gen-gallery")
                    info = gr.Textbox(label="Settings, and the same from the command line / Python", lines=3,
                                      interactive=False, elem_id="gen-info")
                    with gr.Row():
                        grid = gr.File(label="Download (PNG grid)", elem_id="gen-download")
                        latents = gr.File(label="Latents of this result (upload them in the Latents tab)",
                                          elem_id="gen-latents")

            def controls(key: str | None):
                i = self.catalog.info(key) if key else None
                takes = (lambda n: i is not None and i.takes(n))
                return (self._presets(key), gr.update(visible=takes("prompt")),
                        gr.update(visible=takes("steps")), gr.update(visible=takes("height")),
                        gr.update(visible=takes("truncation") or bool(i and i.latent)),
                        gr.update(visible=takes("image")), gr.update(visible=takes("num_images")))

            model.change(controls, model, [preset, prompt, steps, size, truncation, image, count])

            @ui_errors
            def run(key, preset_, prompt_, seed_, count_, steps_, size_, trunc_, image_, progress=gr.Progress()):
                side = _int(size_)
                req = Request(model=key, preset=preset_ or None, prompt=(prompt_ or "").strip() or None,
                              seed=int(seed_ or 0), num_images=int(count_), steps=_int(steps_), height=side,
                              width=side, truncation=None if float(trunc_) >= 1.0 else float(trunc_),
                              inputs={"image": image_} if image_ is not None else {})
                result = self.service.generate(req, progress_of(progress))
                return self._image_outputs(result)

            button.click(run, [model, preset, prompt, seed, count, steps, size, truncation, image],
                         [gallery, info, grid, latents])

    def _image_outputs(self, result: Result) -> tuple:
        images = result.images
        grid = self.file(".png")
        ImageOutput(images).save(grid)
        lat = None
        if result.info.latent and getattr(result.output, "latents", None) is not None:
            lat = str(self.service.save_latents(result, self.file(".safetensors")))
        return images, result.describe(), str(grid), lat

    # -- interpolate -------------------------------------------------------------------------------

    def interpolate_tab(self) -> None:
        infos = self.catalog.of(latent=True)
        if not infos:
            return
        first = self._default(infos)
        with gr.Tab("Interpolate", id="interpolate", elem_id="tab-interpolate"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(choices(infos), value=first, label="Model", elem_id="int-model")
                    preset = gr.Dropdown(**self._preset_choices(first), label="Preset", elem_id="int-preset")
                    with gr.Row():
                        seed_a = gr.Number(0, precision=0, minimum=0, label="Seed A", elem_id="int-seed-a")
                        seed_b = gr.Number(1, precision=0, minimum=0, label="Seed B", elem_id="int-seed-b")
                    with gr.Row():
                        lat_a = gr.File(label="or latents A (.safetensors)", file_types=[".safetensors"],
                                        elem_id="int-latents-a")
                        lat_b = gr.File(label="or latents B", file_types=[".safetensors"], elem_id="int-latents-b")
                    frames = gr.Slider(2, self.limits.max_frames, value=min(8, self.limits.max_frames), step=1,
                                       label="Frames", elem_id="int-frames")
                    mode = gr.Radio([("spherical (slerp)", "slerp"), ("linear", "lerp")], value="slerp",
                                    label="Interpolation", elem_id="int-mode")
                    prompt = gr.Textbox(label="Class (class-conditional models)", elem_id="int-prompt")
                    truncation = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Truncation (1: none)",
                                           elem_id="int-truncation")
                    fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second", elem_id="int-fps")
                    button = gr.Button("Interpolate", variant="primary", elem_id="int-button")
                with gr.Column(scale=2):
                    strip = gr.Image(label="Strip", format="png", type="pil", elem_id="int-strip")
                    gallery = gr.Gallery(label="Frames", format="png", columns=8, elem_id="int-gallery")
                    with gr.Row():
                        gif = gr.Image(label="Animated GIF", type="filepath", elem_id="int-gif")
                        video = gr.Video(label="MP4", elem_id="int-video")
                    info = gr.Textbox(label="Settings, and the same in Python", lines=3, interactive=False,
                                      elem_id="int-info")
            model.change(self._presets, model, preset)

            @ui_errors
            def run(key, preset_, a, b, la, lb, frames_, mode_, prompt_, trunc_, fps_, progress=gr.Progress()):
                from models.gan.latents import load_latents

                za, ya, _ = load_latents(la) if la else (None, None, None)
                zb = load_latents(lb)[0] if lb else None
                req = Request(model=key, preset=preset_ or None, prompt=(prompt_ or "").strip() or None,
                              seed=int(a or 0), latents=za, labels=ya,
                              truncation=None if float(trunc_) >= 1.0 else float(trunc_))
                result = self.service.interpolation(req, int(b or 0), int(frames_), mode_, latents_b=zb,
                                                    progress=progress_of(progress))
                frames_out = result.images
                strip_image = ImageOutput(frames_out).grid(nrow=len(frames_out))
                gif_path = self.file(".gif")
                gif_path.write_bytes(video_bytes(frames_out, float(fps_), ".gif"))
                mp4_path = self.file(".mp4")
                mp4_path.write_bytes(video_bytes(frames_out, float(fps_), ".mp4"))
                return strip_image, frames_out, str(gif_path), str(mp4_path), result.describe()

            button.click(run, [model, preset, seed_a, seed_b, lat_a, lat_b, frames, mode, prompt, truncation, fps],
                         [strip, gallery, gif, video, info])

    # -- latents -----------------------------------------------------------------------------------

    def latents_tab(self) -> None:
        infos = self.catalog.of(latent=True)
        if not infos:
            return
        with gr.Tab("Latents", id="latents", elem_id="tab-latents"):
            gr.Markdown("Upload the latents of an earlier result (the file under every Generate result, or "
                        "`return_latents` of the API) to make the same images again.")
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="Latents (.safetensors)", file_types=[".safetensors"],
                                     elem_id="lat-upload")
                    model = gr.Dropdown([("the model named in the file", "")] + choices(infos), value="",
                                        label="Model", elem_id="lat-model")
                    button = gr.Button("Regenerate", variant="primary", elem_id="lat-button")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(label="Result", format="png", columns=4, elem_id="lat-gallery")
                    info = gr.Textbox(label="Settings", lines=3, interactive=False, elem_id="lat-info")

            @ui_errors
            def run(path, key, progress=gr.Progress()):
                if not path:
                    raise UserError("upload a latents file first (.safetensors from a Generate result)")
                result = self.service.from_latents(path, key or None, progress_of(progress))
                return result.images, result.describe()

            button.click(run, [upload, model], [gallery, info])

    # -- camera (3D models and 3D-aware GANs) ------------------------------------------------------

    def camera_tab(self) -> None:
        infos = self.catalog.of(camera=True)
        if not infos:
            return
        first = infos[0].key
        with gr.Tab("Camera", id="camera", elem_id="tab-camera"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(choices(infos), value=first, label="Model", elem_id="cam-model")
                    preset = gr.Dropdown(**self._preset_choices(first), label="Preset ('tiny': random Gaussians)",
                                         elem_id="cam-preset")
                    ply = gr.File(label="Scene (.ply splats or a checkpoint)", elem_id="cam-ply")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="cam-seed")
                    elevation = gr.Slider(-89, 89, value=25, step=1, label="Elevation (degrees)", elem_id="cam-elevation")
                    azimuth = gr.Slider(0, 359, value=0, step=1, label="Azimuth (degrees)", elem_id="cam-azimuth")
                    radius = gr.Number(0, minimum=0, label="Radius (0: fitted to the scene)", elem_id="cam-radius")
                    views = gr.Slider(2, self.limits.max_frames, value=min(24, self.limits.max_frames), step=1,
                                      label="Turntable views", elem_id="cam-views")
                    size = gr.Slider(32, min(512, self.limits.max_size), value=min(128, self.limits.max_size), step=16,
                                     label="Size (pixels)", elem_id="cam-size")
                    button = gr.Button("Render", variant="primary", elem_id="cam-button")
                with gr.Column(scale=2):
                    view = gr.Image(label="View at the azimuth", format="png", type="pil", elem_id="cam-view")
                    with gr.Row():
                        video = gr.Video(label="Turntable", elem_id="cam-video")
                        viewer = gr.Model3D(label="3D viewer", elem_id="cam-viewer")
                    info = gr.Textbox(label="Settings, and the same from the command line", lines=3,
                                      interactive=False, elem_id="cam-info")
            model.change(self._presets, model, preset)

            @ui_errors
            def run(key, preset_, ply_, seed_, elev, az, rad, n, side, progress=gr.Progress()):
                i = self.catalog.info(key)
                options: dict[str, Any] = {}
                for name, value in (("elevation", float(elev)), ("radius", float(rad) if rad else None),
                                    ("n_views", int(n)), ("width", int(side)), ("azimuth", float(az))):
                    if i.takes(name) and value is not None:
                        options[name] = value
                req = Request(model=key, preset=preset_ or None, seed=int(seed_ or 0), options=options,
                              inputs={"ply": ply_} if ply_ else {})
                result = self.service.generate(req, progress_of(progress))
                out = result.output
                renders = result.images
                # a model that takes no azimuth renders an orbit from azimuth 0: show its nearest view
                pick = 0 if i.takes("azimuth") else round(float(az) / 360 * len(renders)) % max(len(renders), 1)
                mp4 = None
                if len(renders) > 1:
                    mp4 = self.file(".mp4")
                    mp4.write_bytes(video_bytes(renders, getattr(out, "fps", 24.0), ".mp4"))
                mesh = None
                if ".ply" in (getattr(out, "writers", None) or {}):
                    mesh = str(out.save(self.file(".ply"))[0])
                elif ".glb" in (getattr(out, "writers", None) or {}):
                    mesh = str(out.save(self.file(".glb"))[0])
                return renders[pick] if renders else None, str(mp4) if mp4 else None, mesh, result.describe()

            button.click(run, [model, preset, ply, seed, elevation, azimuth, radius, views, size],
                         [view, video, viewer, info])

    # -- video -------------------------------------------------------------------------------------

    def video_tab(self) -> None:
        infos = self.catalog.of("video")
        if not infos:
            return
        first = infos[0].key
        with gr.Tab("Video", id="video", elem_id="tab-video"):
            with gr.Row():
                with gr.Column(scale=1):
                    model = gr.Dropdown(choices(infos), value=first, label="Model", elem_id="vid-model")
                    preset = gr.Dropdown(**self._preset_choices(first), label="Preset", elem_id="vid-preset")
                    image = gr.Image(type="pil", label="Input image", elem_id="vid-image")
                    prompt = gr.Textbox(label="Prompt", elem_id="vid-prompt")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed", elem_id="vid-seed")
                    frames = gr.Slider(2, self.limits.max_frames, value=min(14, self.limits.max_frames), step=1,
                                       label="Frames", elem_id="vid-frames")
                    fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second", elem_id="vid-fps")
                    button = gr.Button("Generate video", variant="primary", elem_id="vid-button")
                with gr.Column(scale=2):
                    video = gr.Video(label="Video", elem_id="vid-video")
                    info = gr.Textbox(label="Settings", lines=3, interactive=False, elem_id="vid-info")
            model.change(self._presets, model, preset)

            @ui_errors
            def run(key, preset_, image_, prompt_, seed_, frames_, fps_, progress=gr.Progress()):
                i = self.catalog.info(key)
                options = {k: v for k, v in (("num_frames", int(frames_)), ("fps", float(fps_))) if i.takes(k)}
                req = Request(model=key, preset=preset_ or None, prompt=(prompt_ or "").strip() or None,
                              seed=int(seed_ or 0), options=options,
                              inputs={"image": image_} if image_ is not None else {})
                result = self.service.generate(req, progress_of(progress))
                out = result.output
                path = self.file(".mp4")
                path.write_bytes(video_bytes(out.frames[0], float(getattr(out, "fps", fps_)), ".mp4"))
                return str(path), result.describe()

            button.click(run, [model, preset, image, prompt, seed, frames, fps], [video, info])
