"""The web demo and REST API: every registered model in a browser, and over HTTP.

    python inference/web_demo.py                          # all models; the digits DCGAN runs offline on CPU
    python inference/web_demo.py --models dcgan,flux --port 8000
    python inference/web_demo.py --host 0.0.0.0 --token "$(openssl rand -hex 16)"   # reachable: set a token
    python inference/web_demo.py --study-a dcgan --study-b vanilla_gan --study-prompts prompts.txt

Open http://127.0.0.1:7860 for the demo; the API is POST /generate, POST /interpolate, GET /models,
GET /health (schema at /openapi.json). Tabs come from the registry: a newly registered model
appears on the next start.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.web.cli import add_server_args, settings_from  # noqa: E402
from utils.cli import ArgumentParser  # noqa: E402
from utils.errors import cli_errors  # noqa: E402


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="web_demo.py", description=__doc__.split("\n\n")[0])
    add_server_args(p, study=True)
    return p


def main(argv: list[str] | None = None) -> None:
    with cli_errors("web_demo.py"):
        args = build_parser().parse_args(argv)
        settings = settings_from(args)
        from inference.web.app import serve

        serve(settings)


if __name__ == "__main__":
    main()
