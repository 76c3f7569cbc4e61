"""One ASGI app: the REST API and the gradio demo mounted beside it, behind the token and size guards.

    from inference.web.app import create_app, serve
    app = create_app(ServerSettings())          # uvicorn-ready (python inference/web_demo.py runs it)
"""
from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from inference.web.api import build_router, install_error_handlers  # noqa: E402
from inference.web.files import FileStore  # noqa: E402
from inference.web.middleware import BodyLimit, TokenGuard  # noqa: E402
from inference.web.service import Service  # noqa: E402
from inference.web.settings import LOCALHOST, ServerSettings  # noqa: E402
from inference.web.tabs import Tabs  # noqa: E402

TAB_NAMES = ("generate", "interpolate", "latents", "camera", "video", "study")
# system fonts only: the page loads nothing from outside (it works offline)
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_demo(service: Service) -> gr.Blocks:
    """The gradio Blocks: one tab per thing the served models can do (and the study, when set)."""
    settings = service.settings
    wanted = set(settings.tabs or TAB_NAMES)
    unknown = wanted - set(TAB_NAMES)
    if unknown:
        from utils.errors import UserError

        raise UserError(f"unknown tab(s) {', '.join(sorted(unknown))}: choose from {', '.join(TAB_NAMES)}")
    tabs = Tabs(service)
    service.on_close(tabs.close)
    # gradio's own copies of results are dropped after an hour too
    with gr.Blocks(title="cv-generative", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown("## cv-generative\nModels of the zoo, from the registry. Every result shows its settings "
                    "and the command that makes it again. The REST API is described at `/docs` and `/openapi.json`.")
        with gr.Tabs():
            for name in TAB_NAMES[:-1]:
                if name in wanted:
                    getattr(tabs, f"{name}_tab")()
            if "study" in wanted and settings.study is not None:
                from inference.web.study import Study
                from inference.web.study_tab import study_tab

                study_tab(Study(settings.study, service), demo)
    limit = settings.concurrency + settings.queue
    demo.queue(default_concurrency_limit=limit, max_size=4 * limit)
    return demo


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The API (/models, /generate, /interpolate, /health, /files) with the demo at /."""
    settings = settings or ServerSettings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="cv-generative", summary="Generate with the models of the zoo", version="0.1.0",
                  lifespan=lifespan)
    app.state.service = service
    install_error_handlers(app)
    app.include_router(build_router(service, FileStore(settings.output_dir, settings.max_files)))
    demo = build_demo(service)
    app = gr.mount_gradio_app(app, demo, path="/", ssr_mode=False, theme=THEME, footer_links=[],
                              max_file_size=settings.limits.max_body_bytes, show_error=True)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    token = settings.resolved_token()
    if token:
        app.add_middleware(TokenGuard, token=token)
    return app


ENV_PREFIX = "CVG_"


def settings_from_env(env: dict[str, str] | None = None) -> ServerSettings:
    """Server settings from CVG_* environment variables (the Docker image's way to configure the app):
    CVG_MODELS (comma-separated), CVG_DEVICE, CVG_DTYPE, CVG_CONCURRENCY, CVG_QUEUE, CVG_TIMEOUT,
    CVG_MAX_IMAGES, CVG_MAX_SIZE, CVG_MAX_STEPS, CVG_MAX_WORK, CVG_MAX_FRAMES, CVG_MAX_BODY, CVG_OUTPUT_DIR;
    the token is read from CVG_API_TOKEN when the app starts."""
    from pathlib import Path

    from inference.web.settings import Limits
    from utils.errors import UserError

    env = dict(os.environ if env is None else env)
    get = (lambda key: env.get(ENV_PREFIX + key) or None)

    def number(key: str, kind: type, default):
        value = get(key)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            raise UserError(f"${ENV_PREFIX}{key}={value!r} is not a {kind.__name__}") from None

    d, lim = ServerSettings(), Limits()
    limits = Limits(max_images=number("MAX_IMAGES", int, lim.max_images), max_size=number("MAX_SIZE", int, lim.max_size),
                    max_steps=number("MAX_STEPS", int, lim.max_steps), max_work=number("MAX_WORK", int, lim.max_work),
                    max_frames=number("MAX_FRAMES", int, lim.max_frames),
                    max_body_bytes=number("MAX_BODY", int, lim.max_body_bytes),
                    timeout_s=number("TIMEOUT", float, lim.timeout_s))
    models = tuple(n.strip() for n in (get("MODELS") or "").split(",") if n.strip())
    return ServerSettings(models=models, device=get("DEVICE"), dtype=get("DTYPE"),
                          concurrency=number("CONCURRENCY", int, d.concurrency), queue=number("QUEUE", int, d.queue),
                          limits=limits, output_dir=Path(get("OUTPUT_DIR") or d.output_dir))


def app_from_env() -> FastAPI:
    """`uvicorn --factory inference.web.app:app_from_env`: the app configured by CVG_* variables."""
    return create_app(settings_from_env())


def host_warning(host: str) -> str | None:
    """The warning printed when the server listens beyond this machine."""
    if host in (LOCALHOST, "localhost", "::1"):
        return None
    return (f"warning: serving on {host}: anyone who can reach this machine can run the models. "
            "Set --token (or $CVG_API_TOKEN) and put the server behind a reverse proxy with TLS.")


def serve(settings: ServerSettings) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    warning = host_warning(settings.host)
    if warning:
        print(warning, file=sys.stderr)
    app = create_app(settings)
    token = "yes" if settings.resolved_token() else "no"
    print(f"serving {len(app.state.service.catalog.infos)} models on http://{settings.host}:{settings.port} "
          f"(token required: {token}; API schema at /openapi.json)", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5)
