"""The REST API: GET /models, POST /generate, POST /interpolate, GET /health (and /files/<name>).

Bodies are validated by pydantic; every error is JSON {"error": "<one line>", "status": N}: a bad
body 400/422, an unknown model 404, a request beyond the caps 413, a wrong or missing token 401,
a full queue 503 with Retry-After, a timeout 504. The schema is at /openapi.json.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import APIRouter, FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from inference.web.catalog import UnknownModel
from inference.web.files import MEDIA_TYPES, FileStore
from inference.web.limits import Busy, TimedOut, TooLarge
from inference.web.media import b64, from_b64, png_bytes, video_bytes, write_temp
from inference.web.service import Request, Result, Service
from models.gan.latents import load_latents
from utils.errors import UserError, short_reason

Modality = Literal["image", "gan", "video", "3d"]
Scalar = int | float | str | bool


class GenerateBody(BaseModel):
    """POST /generate: a model, its settings, and how the images come back."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("dcgan", max_length=100, description="registry name (python -m models list)")
    modality: Modality | None = Field(None, description="needed only where two modalities share a name")
    preset: str | None = Field(None, max_length=100, description="the model's preset (default: its default)")
    prompt: str | None = Field(None, max_length=2000, description="text prompt, or a class name for class GANs")
    negative_prompt: str | None = Field(None, max_length=2000)
    seed: int = Field(0, ge=0, le=2 ** 63 - 1, description="the same seed gives the same images")
    num_images: int = Field(1, ge=1)
    steps: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=8)
    width: int | None = Field(None, ge=8)
    guidance: float | None = Field(None, ge=0)
    truncation: float | None = Field(None, gt=0, le=1, description="latent truncation psi (1: none)")
    latents: str | None = Field(None, description="a latent file (save_latents / return_latents), base64")
    options: dict[str, Scalar] = Field(default_factory=dict, description="further scalar options of the model's call")
    format: Literal["base64", "png", "url"] = Field("base64", description="base64 PNGs in JSON, one PNG "
                                                    "(a grid for several), or URLs under /files/")
    return_latents: bool = Field(False, description="also return the latent file (latent GANs)")


class InterpolateBody(BaseModel):
    """POST /interpolate: frames between the latents of two seeds (or two latent files)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("dcgan", max_length=100)
    modality: Modality | None = None
    preset: str | None = Field(None, max_length=100)
    seed_a: int = Field(0, ge=0, le=2 ** 63 - 1)
    seed_b: int = Field(1, ge=0, le=2 ** 63 - 1)
    latents_a: str | None = Field(None, description="a latent file (base64) instead of seed_a")
    latents_b: str | None = Field(None, description="a latent file (base64) instead of seed_b")
    frames: int = Field(8, ge=2)
    mode: Literal["slerp", "lerp"] = "slerp"
    prompt: str | None = Field(None, max_length=2000, description="a class name for every frame")
    truncation: float | None = Field(None, gt=0, le=1)
    fps: float = Field(8.0, gt=0, le=60)
    format: Literal["base64", "url", "gif"] = Field("base64", description="base64 frames and GIF in JSON, "
                                                    "URLs under /files/, or the GIF itself")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """The facade's own errors, and the server's, as 4xx JSON with their one-line message."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: HTTPRequest, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return error(400, "the body is not valid JSON: send a JSON object (Content-Type: application/json)")
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        return error(422, f"{where}: {first.get('msg', 'invalid')}{more}")

    @app.exception_handler(UserError)
    async def _user(_: HTTPRequest, exc: UserError) -> JSONResponse:
        if isinstance(exc, Busy):
            return error(503, str(exc), {"Retry-After": str(exc.retry_after)})
        status = 404 if isinstance(exc, UnknownModel) else 413 if isinstance(exc, TooLarge) else \
            504 if isinstance(exc, TimedOut) else 400
        return error(status, str(exc))

    @app.exception_handler(Exception)
    async def _internal(_: HTTPRequest, exc: Exception) -> JSONResponse:
        return error(500, f"internal error ({type(exc).__name__}: {short_reason(exc)}); the server keeps running")


def _latents_from(text: str | None, what: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if text is None:
        return None, None
    path = write_temp(from_b64(text, what), ".safetensors")
    try:
        latents, labels, _ = load_latents(path)
    except UserError:
        raise UserError(f"{what} is not a latent file: send one written by save_latents "
                        "(or returned with return_latents)") from None
    finally:
        path.unlink(missing_ok=True)
    return latents, labels


def _ship(store: FileStore, data: bytes, suffix: str, fmt: str) -> str:
    return f"/files/{store.put(data, suffix)}" if fmt == "url" else b64(data)


def _latent_bytes(service: Service, result: Result) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return service.save_latents(result, Path(tmp) / "latents.safetensors").read_bytes()


def build_router(service: Service, store: FileStore) -> APIRouter:
    router = APIRouter()

    @router.get("/health", summary="Liveness, loaded pipelines and queue state")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": len(service.catalog.infos), "loaded": service.catalog.loaded(),
                "queues": service.gates.stats()}

    @router.get("/models", summary="The served models, their presets and the options their call takes")
    async def list_models() -> dict[str, Any]:
        return {"default": service.catalog.default,
                "models": [i.to_dict() for i in service.catalog.infos.values()],
                "limits": service.settings.limits.__dict__}

    @router.post("/generate", summary="Generate images (or renders) with a served model")
    async def generate(body: GenerateBody) -> Response:
        latents, labels = _latents_from(body.latents, "latents")
        req = Request(model=body.model, modality=body.modality, preset=body.preset, prompt=body.prompt,
                      negative_prompt=body.negative_prompt, seed=body.seed, num_images=body.num_images,
                      steps=body.steps, height=body.height, width=body.width, guidance=body.guidance,
                      truncation=body.truncation, latents=latents, labels=labels, options=dict(body.options))
        result = await service.generate_async(req)
        images = result.images
        if body.format == "png":
            if not images:
                raise UserError(f"{result.info.key} returned no images: ask for format 'base64' or 'url'")
            from utils.outputs import ImageOutput

            grid = images[0] if len(images) == 1 else ImageOutput(images).grid()
            return Response(png_bytes(grid), media_type="image/png", headers={"X-Seed": str(body.seed)})
        payload: dict[str, Any] = {"model": result.info.key, "settings": result.settings, "command": result.command,
                                   "python": result.python}
        key = "urls" if body.format == "url" else "images"
        payload[key] = [_ship(store, png_bytes(im), ".png", body.format) for im in images]
        if images:
            payload["width"], payload["height"] = images[0].size
        out = result.output
        if ".ply" in (getattr(out, "writers", None) or {}):
            with tempfile.TemporaryDirectory() as tmp:
                ply = out.save(Path(tmp) / "result.ply")[0].read_bytes()
            payload["ply_url" if body.format == "url" else "ply"] = _ship(store, ply, ".ply", body.format)
        if getattr(out, "frames", None):
            mp4 = video_bytes(out.frames[0], out.fps, ".mp4")
            payload["video_url" if body.format == "url" else "video"] = _ship(store, mp4, ".mp4", body.format)
        if body.return_latents:
            data = _latent_bytes(service, result)
            payload["latents_url" if body.format == "url" else "latents"] = _ship(store, data, ".safetensors",
                                                                                  body.format)
        return JSONResponse(payload)

    @router.post("/interpolate", summary="Frames between two latents (linear or spherical), with a GIF")
    async def interpolate(body: InterpolateBody) -> Response:
        za, ya = _latents_from(body.latents_a, "latents_a")
        zb, _ = _latents_from(body.latents_b, "latents_b")
        req = Request(model=body.model, modality=body.modality, preset=body.preset, prompt=body.prompt,
                      seed=body.seed_a, latents=za, labels=ya, truncation=body.truncation)
        result = await service.interpolation_async(req, body.seed_b, body.frames, body.mode, latents_b=zb)
        gif = video_bytes(result.images, body.fps, ".gif")
        if body.format == "gif":
            return Response(gif, media_type="image/gif")
        fmt = body.format
        return JSONResponse({"model": result.info.key, "settings": result.settings, "python": result.python,
                             ("frame_urls" if fmt == "url" else "frames"):
                                 [_ship(store, png_bytes(im), ".png", fmt) for im in result.images],
                             ("gif_url" if fmt == "url" else "gif"): _ship(store, gif, ".gif", fmt)})

    @router.get("/files/{name}", summary="A file written for a 'url' result", include_in_schema=True)
    async def files(name: str) -> Response:
        path = store.path(name)
        if path is None:
            return error(404, f"no file '{name}' here: files are kept for the newest {store.max_files} results")
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix])

    return router
