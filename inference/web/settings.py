"""What the web server is told at start: where it listens, which models it serves, and its limits."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "CVG_API_TOKEN"
"""The environment variable that holds the API token when `--token` is not given."""

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Limits:
    """The caps every request is checked against before any work starts (413 beyond them)."""

    max_images: int = 16
    """Images (or frames, or views) one request may ask for."""
    max_size: int = 1024
    """Largest height or width in pixels."""
    max_steps: int = 100
    """Most sampling steps (diffusion models)."""
    max_work: int = 2 ** 26
    """Cap on images x height x width x steps (a request that gives no size counts `max_size`)."""
    max_frames: int = 64
    """Most frames of an interpolation."""
    max_body_bytes: int = 4 * 2 ** 20
    """Largest request body (JSON or upload), in bytes."""
    timeout_s: float = 120.0
    """A request that waited and ran longer than this is answered 504 (its slot frees when the work ends)."""


@dataclass(frozen=True)
class StudySettings:
    """A pairwise A/B preference study: the same prompts and seeds through two systems."""

    a: str
    """System A as 'model[:preset][,key=value...]' (for example 'dcgan:digits,truncation=0.7')."""
    b: str
    """System B, in the same form."""
    db: Path
    """The SQLite file the votes go to (created on first use)."""
    prompts: tuple[str, ...] = ()
    """Prompts (class names for class-conditional GANs); empty: the models' own choice."""
    seeds: tuple[int, ...] = tuple(range(8))
    """The seeds every prompt is shown with."""
    name: str = "study"
    """The study's name in the database (several studies can share one file)."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything `create_app` needs; the command line fills it."""

    host: str = LOCALHOST
    """Address to bind; 127.0.0.1 keeps the server on this machine."""
    port: int = 7860
    """TCP port (0 picks a free one)."""
    models: tuple[str, ...] = ()
    """Registry names ('dcgan' or 'gan/dcgan') to serve; empty: every registered model."""
    default_model: str = "gan/dcgan"
    """The model selected when a page opens (the shipped digits DCGAN runs offline on CPU)."""
    device: str | None = None
    """Device the pipelines load on (None: the facade's choice)."""
    dtype: str | None = None
    """Dtype the pipelines load in (None: the model's choice for the device)."""
    token: str | None = None
    """When set, every request must carry it (Authorization: Bearer, X-API-Token, or the cookie the
    page sets after one visit with ?token=...)."""
    concurrency: int = 1
    """Calls of one model that run at once (1: one loaded pipeline serves its requests in turn)."""
    queue: int = 16
    """Requests of one model that may wait behind the running ones; beyond that: 503 with Retry-After."""
    retry_after_s: int = 2
    """The Retry-After a refused request is told."""
    limits: Limits = field(default_factory=Limits)
    """Per-request caps."""
    output_dir: Path = Path("outputs/web")
    """Where results asked for as file URLs are written (served under /files/)."""
    max_files: int = 512
    """Files kept in `output_dir`; the oldest go first."""
    study: StudySettings | None = None
    """The A/B study served as a tab, if any."""
    tabs: tuple[str, ...] = ()
    """Only these tabs ('generate', 'interpolate', 'latents', 'camera', 'video', 'study'); empty: all that apply."""

    def resolved_token(self) -> str | None:
        """The token from the settings, else from the environment ($CVG_API_TOKEN), else None."""
        return self.token or os.environ.get(TOKEN_ENV) or None
