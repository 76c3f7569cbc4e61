"""Package exports imported on first use, so that importing a package (for its torch-free spec.py) is cheap."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for a package whose public names live in its modules.

    `exports` maps a public name to 'module:attribute' (the module relative to the package).
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        module, _, attr = exports[name].partition(":")
        return getattr(importlib.import_module(f"{package}.{module}"), attr)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
