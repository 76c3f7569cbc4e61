"""What the demo's tabs and the API both do: check a request, run it through the model's gate, and
say how to make the same result again from the command line or Python.

Every result carries its settings (model, preset, seed, ...) and the equivalent command, so a
picture found in the browser can be remade with `inference/generate_image.py` or `models.generate`.
Latent tools are those of `models.gan.latents` (interpolation, truncation, latent files).
"""
from __future__ import annotations

import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from inference.web.catalog import Catalog, ModelInfo
from inference.web.limits import Gates, check_request
from inference.web.settings import ServerSettings
from models.gan.latents import interpolate, load_latents, save_latents, truncate
from utils.errors import UserError
from utils.outputs import ImageOutput
from utils.torch_utils import make_generator

Progress = Callable[[float, str], None]

# request field -> generate_image.py flag (the options that command line takes)
CLI_FLAGS = {"preset": "--preset", "prompt": "--prompt", "negative_prompt": "--negative-prompt", "seed": "--seed",
             "num_images": "--num-images", "height": "--height", "width": "--width", "steps": "--steps",
             "guidance": "--guidance"}
IMAGE_CLI = "inference/generate_image.py"


@dataclass(frozen=True)
class Request:
    """One generation: the model and the settings a user chose (None: the model's default)."""

    model: str
    modality: str | None = None
    preset: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int = 0
    num_images: int = 1
    steps: int | None = None
    height: int | None = None
    width: int | None = None
    guidance: float | None = None
    truncation: float | None = None
    latents: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments of the model's own call (scalars only: camera angles, fps, ...)."""
    inputs: dict[str, Any] = field(default_factory=dict)
    """Files the demo's user uploaded (an input image, a .ply), by call keyword; the API sends none."""


@dataclass
class Result:
    """A finished request: the typed output, the settings used, and how to make it again."""

    output: Any
    settings: dict[str, Any]
    command: str | None
    """The equivalent command line, when every setting has a flag there."""
    python: str
    """The equivalent Python call."""
    info: ModelInfo

    @property
    def images(self) -> list:
        out = self.output
        return list(getattr(out, "images", None) or getattr(out, "renders", None) or [])

    def describe(self) -> str:
        """The settings, the command and the Python call, as shown under every result."""
        lines = [", ".join(f"{k}={v}" for k, v in self.settings.items() if v is not None)]
        if self.command:
            lines.append(self.command)
        lines.append(self.python)
        return "\n".join(lines)


# options a request may pass through `options`: scalars only, never paths, tensors or callables
_REFUSED_OPTIONS = {"ply", "image", "mask", "control", "weights", "callback", "interrupt", "generator", "cameras",
                    "latents", "labels", "class_labels", "indices", "output_type", "progress", "batch_size"}


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class Service:
    """The work behind every tab and endpoint; one per app, thread-safe."""

    def __init__(self, settings: ServerSettings, catalog: Catalog | None = None):
        self.settings = settings
        self.catalog = catalog or Catalog(settings.models, settings.default_model, settings.device, settings.dtype)
        self.gates = Gates(settings.concurrency, settings.queue, settings.retry_after_s)
        self._closers: list[Callable[[], None]] = []

    # -- generation --------------------------------------------------------------------------------

    def check(self, req: Request) -> ModelInfo:
        """The request's model, once its size is within the caps (raises before anything loads)."""
        info = self.catalog.info(req.model, req.modality)
        info.spec.check_preset(req.preset)
        count = req.num_images if req.latents is None else int(req.latents.shape[0])
        frames = next((k for k in ("n_views", "num_frames") if k in req.options), None)
        if frames is not None:
            count = int(req.options[frames])
        steps = req.steps if req.steps is not None else info.spec.default(info.spec.check_preset(req.preset), "steps")
        height = req.height or _number(req.options.get("height"))
        width = req.width or _number(req.options.get("width"))
        check_request(self.settings.limits, count, height, width, steps if info.takes("steps") else None,
                      frames=frames is not None)
        for key, value in req.options.items():
            if key in _REFUSED_OPTIONS or not info.takes(key):
                raise UserError(f"{info.spec.name} does not take option '{key}' here")
            if not isinstance(value, (int, float, str, bool)) and value is not None:
                raise UserError(f"option '{key}' must be a number, a string or a boolean")
        return info

    def generate(self, req: Request, progress: Progress | None = None, timeout: float | None = None) -> Result:
        """Check `req`, queue it on its model's gate, run it; from a plain thread (the demo)."""
        info = self.check(req)
        cancel = threading.Event()
        try:
            return self.gates[info.key].run(lambda: self.run(info, req, progress, cancel),
                                            timeout or self.settings.limits.timeout_s)
        finally:
            cancel.set()  # a timed-out diffusion run stops at its next step

    async def generate_async(self, req: Request, timeout: float | None = None) -> Result:
        """`generate` for the API's event loop: a full queue is refused before the first await."""
        info = self.check(req)
        cancel = threading.Event()
        try:
            return await self.gates[info.key].run_async(lambda: self.run(info, req, None, cancel),
                                                        timeout or self.settings.limits.timeout_s)
        finally:
            cancel.set()

    def run(self, info: ModelInfo, req: Request, progress: Progress | None = None,
            cancel: threading.Event | None = None) -> Result:
        """Load the pipeline (once) and call it with the request's settings; on a gate worker."""
        if progress:
            progress(0.0, f"loading {info.key}")
        pipe = self.catalog.pipeline(info, req.preset)
        kwargs = self.call_kwargs(info, pipe, req)
        if info.takes("callback") and progress is not None:
            total = req.steps or info.spec.default(info.spec.check_preset(req.preset), "steps", 1)
            kwargs["callback"] = lambda step: progress(min(step.num_calls / max(total, 1), 1.0), "sampling")
        if info.takes("interrupt") and cancel is not None:
            kwargs["interrupt"] = cancel
        if info.takes("progress"):
            kwargs["progress"] = False
        if progress:
            progress(0.1, f"generating with {info.key}")
        with torch.inference_mode():
            output = pipe(**kwargs)
        return Result(output, self.settings_of(info, req), self.command_of(info, req), self.python_of(info, req), info)

    def call_kwargs(self, info: ModelInfo, pipe: Any, req: Request) -> dict[str, Any]:
        """The keyword arguments of the pipeline call: only what the user set, and only what it takes."""
        name = info.spec.name
        kwargs: dict[str, Any] = {}
        if info.takes("seed"):
            kwargs["seed"] = req.seed
        given = {"prompt": req.prompt, "negative_prompt": req.negative_prompt, "steps": req.steps,
                 "height": req.height, "width": req.width, "guidance": req.guidance}
        for key, value in given.items():
            if value is None or value == "":
                continue
            if not info.takes(key):
                raise UserError(f"{name} does not take {key.replace('_', ' ')}: leave it empty")
            kwargs[key] = value
        latents = req.latents
        if req.truncation is not None and req.truncation != 1.0 and not info.takes("truncation"):
            if not info.latent:
                raise UserError(f"{name} has no latent truncation: leave truncation at 1")
            if latents is None:  # the latents the seed gives, pulled towards the mean
                latents = pipe.sample_latents(req.num_images, make_generator(req.seed))
            latents = truncate(self._check_latents(info, pipe, latents), req.truncation)
        elif req.truncation is not None and info.takes("truncation"):
            kwargs["truncation"] = req.truncation
        if latents is not None:
            if not info.latent:
                raise UserError(f"{name} takes no latents: latent files are for latent GANs")
            kwargs["latents"] = self._check_latents(info, pipe, latents).float()
        elif info.takes("num_images"):
            kwargs["num_images"] = req.num_images
        if req.labels is not None:
            key = self._label_key(info)
            if key is None:
                raise UserError(f"{name} takes no class labels")
            kwargs[key] = req.labels.long()
        kwargs.update({k: v for k, v in req.options.items() if v is not None})
        for key, value in req.inputs.items():
            if value is None:
                continue
            if not info.takes(key):
                raise UserError(f"{name} does not take an input {key}")
            kwargs[key] = value
        return kwargs

    # -- reproducing a result ----------------------------------------------------------------------

    def settings_of(self, info: ModelInfo, req: Request) -> dict[str, Any]:
        preset = info.spec.check_preset(req.preset)
        shown = {"model": info.key, "preset": preset, "seed": req.seed if info.takes("seed") else None,
                 "num_images": (req.num_images if req.latents is None else int(req.latents.shape[0]))
                 if info.takes("num_images") or req.latents is not None else None,
                 "prompt": req.prompt or None, "negative_prompt": req.negative_prompt or None, "steps": req.steps,
                 "height": req.height, "width": req.width, "guidance": req.guidance, "truncation": req.truncation,
                 "latents": "from file" if req.latents is not None else None}
        shown.update(req.options)
        return shown

    def command_of(self, info: ModelInfo, req: Request) -> str | None:
        """The generate_image.py (or generate_3d.py) command that makes the same result, or None when a
        setting has no flag there."""
        if info.spec.modality == "3d":
            return self._command_3d(info, req)
        if info.spec.modality not in ("image", "gan") or req.latents is not None or req.options:
            return None
        if any(v is not None for v in req.inputs.values()):
            return None
        if req.truncation not in (None, 1.0):
            return None
        argv = ["python", IMAGE_CLI, "--model", info.spec.name]
        for key, flag in CLI_FLAGS.items():
            value = info.spec.check_preset(req.preset) if key == "preset" else getattr(req, key)
            if value is None or value == "" or (key == "seed" and not info.takes("seed")):
                continue
            argv += [flag, str(value)]
        return shlex.join(argv)

    @staticmethod
    def _command_3d(info: ModelInfo, req: Request) -> str | None:
        flags = {"n_views": "--frames", "width": "--size", "elevation": "--elevation", "radius": "--radius",
                 "fov": "--fov", "fps": "--fps"}
        if any(k not in flags for k in req.options):
            return None
        argv = ["python", "inference/generate_3d.py", "--model", info.spec.name,
                "--preset", info.spec.check_preset(req.preset)]
        if req.inputs.get("ply") is not None:
            argv += ["--ply", Path(str(req.inputs["ply"])).name]
        for key, value in req.options.items():
            if value is not None:
                argv += [flags[key], str(value)]
        return shlex.join(argv)

    def python_of(self, info: ModelInfo, req: Request) -> str:
        """A runnable Python equivalent (`import models` first; latent files through models.gan.latents)."""
        modality, name, preset = info.spec.modality, info.spec.name, info.spec.check_preset(req.preset)
        head = f"{modality!r}, {name!r}, preset={preset!r}"
        args = [head]
        for key in ("prompt", "negative_prompt", "steps", "height", "width", "guidance"):
            value = getattr(req, key)
            if value not in (None, ""):
                args.append(f"{key}={value!r}")
        if info.takes("seed"):
            args.append(f"seed={req.seed}")
        args += [f"{k}={v!r}" for k, v in req.options.items()]
        before = ""
        if req.latents is not None:
            before = "from models.gan.latents import load_latents; z, y, _ = load_latents('latents.safetensors'); "
            args.append("latents=z" + (", labels=y" if req.labels is not None else ""))
        elif req.truncation not in (None, 1.0) and not info.takes("truncation"):
            before = (f"from models.gan.latents import truncate; from utils.torch_utils import make_generator; "
                      f"z = models.load({head}).sample_latents({req.num_images}, make_generator({req.seed})); ")
            args.append(f"latents=truncate(z, {req.truncation})")
        else:
            if info.takes("num_images"):
                args.append(f"num_images={req.num_images}")
            if req.truncation is not None and info.takes("truncation"):
                args.append(f"truncation={req.truncation}")
        return f"{before}models.generate({', '.join(args)})"

    # -- latent tools (models.gan.latents) ----------------------------------------------------------

    def interpolation(self, req: Request, seed_b: int, frames: int, mode: str,
                      latents_b: torch.Tensor | None = None, progress: Progress | None = None,
                      timeout: float | None = None) -> Result:
        """`frames` images from the latent of `req.seed` (or `req.latents`) to that of `seed_b`; from a thread."""
        info, work = self._interpolation(req, seed_b, frames, mode, latents_b, progress)
        return self.gates[info.key].run(work, timeout or self.settings.limits.timeout_s)

    async def interpolation_async(self, req: Request, seed_b: int, frames: int, mode: str,
                                  latents_b: torch.Tensor | None = None, timeout: float | None = None) -> Result:
        info, work = self._interpolation(req, seed_b, frames, mode, latents_b, None)
        return await self.gates[info.key].run_async(work, timeout or self.settings.limits.timeout_s)

    def _interpolation(self, req: Request, seed_b: int, frames: int, mode: str, latents_b: torch.Tensor | None,
                       progress: Progress | None) -> tuple[ModelInfo, Callable[[], Result]]:
        info = self.catalog.info(req.model, req.modality)
        if not info.latent:
            raise UserError(f"{info.spec.name} has no latent space to interpolate: choose one of "
                            f"{', '.join(i.spec.name for i in self.catalog.of(latent=True)) or 'no served model'}")
        preset = info.spec.check_preset(req.preset)
        if frames < 2:
            raise UserError("an interpolation needs at least 2 frames")
        check_request(self.settings.limits, frames, None, None, None, frames=True)
        if mode not in ("slerp", "lerp"):
            raise UserError(f"unknown interpolation '{mode}': use slerp or lerp")
        native = info.takes("truncation")  # BigGAN truncates its own noise; the others through latents.truncate

        def work() -> Result:
            pipe = self.catalog.pipeline(info, preset)
            ends, labels = [], None
            for seed, given in ((req.seed, req.latents), (seed_b, latents_b)):
                if given is not None:
                    ends.append(self._check_latents(info, pipe, given)[0].float())
                    continue
                # the latent a seed gives is that of the one-image result of that seed
                one = replace(req, seed=seed, num_images=1, latents=None, truncation=req.truncation if native else None)
                with torch.inference_mode():
                    first = pipe(**self.call_kwargs(info, pipe, one))
                ends.append(first.latents[0].float())
                if labels is None and first.labels is not None and not req.prompt:
                    labels = first.labels[:1].long()  # every frame keeps the first end's class
            if req.labels is not None:
                labels = req.labels[:1].long()
            path = interpolate(ends[0], ends[1], frames, mode)
            if req.truncation not in (None, 1.0) and not native:
                path = truncate(path, req.truncation)
            parts = []
            for i in range(0, frames, 8):
                if progress:
                    progress(i / frames, f"frames {i}/{frames}")
                z = path[i:i + 8]
                part = replace(req, latents=z, truncation=req.truncation if native else None,
                               labels=None if labels is None else labels.expand(len(z)))
                with torch.inference_mode():
                    parts.append(pipe(**self.call_kwargs(info, pipe, part)))
            pixels = [o.pixels for o in parts]
            output = ImageOutput([im for o in parts for im in o.images],
                                 pixels=None if any(p is None for p in pixels) else torch.cat(pixels),
                                 latents=path, labels=None if labels is None else labels.expand(frames))
            settings = {"model": info.key, "preset": preset, "seed_a": req.seed, "seed_b": seed_b, "frames": frames,
                        "mode": mode, "prompt": req.prompt or None, "truncation": req.truncation}
            python = (f"ends = [models.generate({info.spec.modality!r}, {info.spec.name!r}, preset={preset!r}, "
                      f"num_images=1, seed=s).latents[0] for s in ({req.seed}, {seed_b})]; "
                      f"models.generate({info.spec.modality!r}, {info.spec.name!r}, preset={preset!r}, "
                      f"latents=models.gan.latents.interpolate(*ends, {frames}, {mode!r})"
                      + (f", prompt={req.prompt!r}" if req.prompt else "")
                      + (f", {self._label_key(info)}={int(labels[0])}" if labels is not None else "") + ")")
            return Result(output, settings, None, python, info)

        return info, work

    @staticmethod
    def _label_key(info: ModelInfo) -> str | None:
        """The call's name for class labels ('labels', BigGAN's 'class_labels'), or None."""
        return "labels" if info.takes("labels") else "class_labels" if info.takes("class_labels") else None

    @staticmethod
    def _check_latents(info: ModelInfo, pipe: Any, latents: torch.Tensor) -> torch.Tensor:
        """Latents of the shape this pipeline's generator takes (one clear line otherwise)."""
        want = tuple(pipe.sample_latents(1, make_generator(0)).shape[1:])
        if latents.ndim != len(want) + 1 or tuple(latents.shape[1:]) != want:
            raise UserError(f"these latents have shape {tuple(latents.shape)}, {info.spec.name} with this preset "
                            f"takes (N, {', '.join(map(str, want))}): were they saved from another model or preset?")
        return latents

    def save_latents(self, result: Result, path: str | Path) -> Path:
        """The latents (and labels) of a latent-GAN result, with its settings, as a safetensors file."""
        out = result.output
        if not result.info.latent or getattr(out, "latents", None) is None:
            raise UserError(f"{result.info.spec.name} results carry no latents to save")
        meta = {k: v for k, v in result.settings.items() if v is not None and k != "latents"}
        # a latent file holds exactly what the generator was fed: a truncation is already in it, except
        # for a model whose call truncates itself (BigGAN), which must be given it again
        if not result.info.takes("truncation"):
            meta.pop("truncation", None)
        return save_latents(path, out.latents, labels=getattr(out, "labels", None), metadata=meta)

    def from_latents(self, path: str | Path, model: str | None = None, progress: Progress | None = None,
                     timeout: float | None = None) -> Result:
        """Regenerate the images of a latent file (the model and preset it names, unless `model` is given)."""
        latents, labels, meta = load_latents(path)
        name = model or meta.get("model")
        if not name:
            raise UserError(f"{Path(path).name} does not say which model made it: choose the model")
        info = self.catalog.info(name)
        truncation = float(meta["truncation"]) if "truncation" in meta and info.takes("truncation") else None
        req = Request(model=info.key, preset=meta.get("preset") or None, prompt=meta.get("prompt") or None,
                      seed=int(meta.get("seed", 0)), latents=latents, labels=labels, truncation=truncation)
        if labels is not None:
            req = replace(req, prompt=None)
        return self.generate(req, progress, timeout)

    def on_close(self, fn: Callable[[], None]) -> None:
        """Run `fn` when the app shuts down (the tabs' temporary folder)."""
        self._closers.append(fn)

    def close(self) -> None:
        self.gates.close()
        for fn in self._closers:
            fn()
