"""NVlabs network pickles (StyleGAN2-ADA, StyleGAN3, EG3D, GET3D) read as data, never as code.

NVlabs' `torch_utils.persistence` pickles every network together with the Python source of its module:
unpickling one with `pickle.load` runs `_reconstruct_persistent_obj`, which `exec`s that source. Here the
restricted unpickler (utils/weights/pickles.py) turns that call into a `PersistentModule` record: the
class name, the constructor arguments (`init_args`, `init_kwargs`) and the module's state (parameters,
buffers, child modules), with the embedded source kept as an inert string that nothing runs. A model
package rebuilds its own network from `init_kwargs` and loads `state_dict()` into it.

`dnnlib.util.EasyDict` (the kwargs dicts) becomes a plain dict; every other class stays an inert
`PickledObject`; a pickle that is not such a network is refused in one line.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from utils.errors import WeightsError, short_reason
from utils.weights.pickles import PickledObject, RestrictedUnpickler

__all__ = ["PersistentModule", "NVlabsUnpickler", "load_nvlabs_pickle", "nvlabs_network"]

PERSISTENCE = ("torch_utils.persistence", "_reconstruct_persistent_obj")
"""The global an NVlabs persistent object is pickled as a call of."""


@dataclass
class PersistentModule:
    """A module of an NVlabs persistence pickle, as data. Its `module_src` is never executed."""

    class_name: str
    """The class name in the pickled module (e.g. 'Generator', 'SynthesisLayer')."""
    init_args: tuple = ()
    """Positional constructor arguments."""
    init_kwargs: dict = field(default_factory=dict)
    """Keyword constructor arguments (nested kwargs dicts included)."""
    state: dict = field(default_factory=dict)
    """The module's __dict__: _parameters, _buffers, _modules and plain attributes."""
    module_src: str = ""
    """The embedded source code, kept as text (not run)."""
    version: int | None = None
    """torch_utils.persistence's format version (6 in every release)."""

    @property
    def source_digest(self) -> str:
        """sha256 of the embedded source: identifies the release a network was pickled from."""
        return hashlib.sha256(self.module_src.encode()).hexdigest()

    @property
    def children(self) -> dict[str, Any]:
        modules = self.state.get("_modules") or {}
        return {k: v for k, v in modules.items() if v is not None}

    def submodule(self, dotted: str) -> Any:
        node: Any = self
        for part in dotted.split("."):
            kids = node.children if isinstance(node, PersistentModule) else _record_children(node)
            if part not in kids:
                raise KeyError(dotted)
            node = kids[part]
        return node

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of the module and its children, keyed as torch's state_dict."""
        return _module_tensors(self.state, "")


def _record_children(node: Any) -> dict[str, Any]:
    state = node.state if isinstance(node, PickledObject) else {}
    modules = state.get("_modules") if isinstance(state, Mapping) else None
    return {k: v for k, v in (modules or {}).items() if v is not None}


def _module_tensors(state: Mapping, prefix: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, p in (state.get("_parameters") or {}).items():
        if isinstance(p, torch.Tensor):
            out[prefix + name] = p.detach()
    for name, b in (state.get("_buffers") or {}).items():
        if isinstance(b, torch.Tensor) and name not in skip:
            out[prefix + name] = b
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PersistentModule):
            out.update(_module_tensors(child.state, f"{prefix}{name}."))
        elif isinstance(child, PickledObject) and isinstance(child.state, Mapping):
            out.update(_module_tensors(child.state, f"{prefix}{name}."))  # a plain torch module (ModuleList...)
    return out


def _persistent_record(meta: Any = None, *rest: Any) -> Any:
    """What `_reconstruct_persistent_obj(meta)` yields here: a record of the object, its source untouched."""
    if not isinstance(meta, Mapping) or rest:
        return PickledObject(".".join(PERSISTENCE), (meta, *rest))
    state = dict(meta.get("state") or {})
    kwargs = state.get("_init_kwargs")
    args = state.get("_init_args")
    src = meta.get("module_src")
    return PersistentModule(class_name=str(meta.get("class_name", "")), init_args=tuple(args or ()),
                            init_kwargs=dict(kwargs) if isinstance(kwargs, Mapping) else {}, state=state,
                            module_src=src if isinstance(src, str) else "", version=meta.get("version"))


class NVlabsUnpickler(RestrictedUnpickler):
    """RestrictedUnpickler that knows the two globals of NVlabs' persistence format (as data)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == PERSISTENCE:
            return _persistent_record
        if (module, name) == ("dnnlib.util", "EasyDict"):
            return dict  # a dict subclass with attribute access: its items are all it holds
        return super().find_class(module, name)


def load_nvlabs_pickle(path: str | os.PathLike) -> Any:
    """The object of an NVlabs .pkl (usually a dict: G, D, G_ema, augment_pipe, training_set_kwargs), with
    every persistent network as a `PersistentModule`. Nothing from the file is imported or run."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}: check the path")
    try:
        with open(path, "rb") as f:
            return NVlabsUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            RuntimeError) as err:
        raise WeightsError(f"{path.name} is not a readable pickle ({short_reason(err)}): it is truncated or "
                           "corrupt; download it again") from None


def nvlabs_network(obj: Any, path: str | os.PathLike, names: tuple[str, ...] = ("G_ema", "G"),
                   what: str = "generator") -> tuple[str, PersistentModule]:
    """(key, network): the first of `names` in an unpickled NVlabs snapshot, or a one-line refusal."""
    name = Path(path).name
    if isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(o, PickledObject) for o in obj):
        raise WeightsError(f"{name} is a TensorFlow-era StyleGAN pickle (dnnlib.tflib networks), which holds no "
                           "PyTorch tensors: use the PyTorch release of the network (NVlabs' stylegan2-ada-pytorch "
                           "or stylegan3 .pkl)")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{name} is not an NVlabs network pickle (it holds a {type(obj).__name__}, not a dict of "
                           f"networks): pass a network-snapshot .pkl of stylegan2-ada-pytorch or stylegan3")
    for key in names:
        net = obj.get(key)
        if isinstance(net, PersistentModule):
            if net.version not in (None, 6):
                raise WeightsError(f"{name}: {key} was pickled by torch_utils.persistence version {net.version}, "
                                   "not the released 6: re-export it with the official code")
            return key, net
    found = ", ".join(f"{k} ({type(v).__name__})" for k, v in list(obj.items())[:6]) or "nothing"
    raise WeightsError(f"{name} holds no NVlabs {what} ({' or '.join(names)} as a persistent network); found "
                       f"{found}: pass a network-snapshot .pkl of stylegan2-ada-pytorch or stylegan3")
