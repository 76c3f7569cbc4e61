"""`python -m models list [--json] [--modality M]`: print the registry."""
from __future__ import annotations

import argparse
import json

from models.registry import MODALITIES, specs
from utils.errors import cli_errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models", description="The models of cv-generative.")
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="list the registered models")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--modality", choices=MODALITIES, help="only this modality")
    sub.add_parser("table", help="print the README's model table (markdown)")
    sub.add_parser("readme", help="rewrite the model table inside README.md")
    args = parser.parse_args(argv)
    with cli_errors("models"):
        if args.command in ("table", "readme"):
            from models.table import markdown_table, update_readme

            if args.command == "table":
                print(markdown_table())
            else:
                print("README.md updated" if update_readme() else "README.md already up to date")
            return
        rows = specs(args.modality)
        if args.json:
            print(json.dumps([s.to_dict() for s in rows], indent=2))
            return
        for s in rows:
            print(f"{s.modality:6s} {s.name:20s} presets: {', '.join(s.presets):40s} {s.summary}")


if __name__ == "__main__":
    main()
