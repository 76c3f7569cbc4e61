"""A restricted unpickler for legacy pickles (NVlabs .pkl, old Lightning .ckpt): tensors and plain
containers are rebuilt, every other class becomes an inert record, and no code from the file runs."""
from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from utils.errors import WeightsError, short_reason

@dataclass
class PickledObject:
    """An inert stand-in for an instance of a class the restricted unpickler does not trust."""

    cls: str
    args: tuple = ()
    state: Any = field(default_factory=dict)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __getitem__(self, key: str) -> Any:
        return self.state[key]


def _record(qualname: str) -> type:
    """A stand-in for the global `qualname`: called (REDUCE) or instantiated (NEWOBJ), it yields a
    PickledObject. It is a class so that both opcodes accept it, whatever the global really was."""
    def new(cls, *args, **kwargs):
        return PickledObject(qualname, args, dict(kwargs))

    return type(qualname.rsplit(".", 1)[-1], (), {"__new__": new, "__qualname__": qualname,
                                                   "_pickled_qualname": qualname})


def _reconstructor(cls: Any, base: Any = None, state: Any = None) -> PickledObject:
    # copyreg._reconstructor rebuilds plain objects in protocols 0 and 1; keep the real class name.
    qualname = getattr(cls, "_pickled_qualname", getattr(cls, "__qualname__", repr(cls)))
    return PickledObject(qualname, (), {} if state is None else state)


def _storage_from_bytes(data: bytes) -> Any:
    # Pickled storages carry a torch.save blob; read it with the safe loader, never the unsafe one.
    return torch.load(io.BytesIO(data), weights_only=True)


@dataclass(frozen=True)
class StorageType:
    """What a pickled `torch.FloatStorage` (etc.) stands for: the dtype of a storage's bytes."""

    name: str
    dtype: torch.dtype


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    # Protocols 0-2 store bytes as _codecs.encode(text, 'latin1'); allow only that, not any codec.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors and builtin containers; every other global becomes an inert record.

    No class or function named by the file is ever imported or called, so a malicious pickle
    (os.system, eval, subprocess...) yields a `PickledObject` instead of running.
    """

    SAFE = {
        ("collections", "OrderedDict"), ("collections", "defaultdict"), ("builtins", "set"),
        ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"), ("builtins", "bytearray"),
        ("builtins", "range"),
        ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch", "Size"), ("torch", "device"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
    # Storage classes only ever name a dtype for persistent ids; map them without touching the
    # deprecated TypedStorage classes.
    STORAGES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                "BoolStorage": torch.bool, "UntypedStorage": torch.uint8}
    DTYPES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "uint8", "int8", "bool"}

    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 spell Python 2 names (__builtin__.set, copy_reg._reconstructor): map them first,
        # as pickle does, so that the allow-list matches and records carry today's names.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        if module == "torch" and name in self.STORAGES:
            return StorageType(name, self.STORAGES[name])
        if module == "torch" and name in self.DTYPES:
            return getattr(torch, name)
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        return _record(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a legacy pickle; use torch.load")


def load_torch_zip_restricted(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """A torch.save zip file read with RestrictedUnpickler: tensors come back, every other object
    in it becomes an inert PickledObject. Nothing named by the file is imported or run."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
            root = pkl.rsplit("/", 1)[0]

            class ZipUnpickler(RestrictedUnpickler):
                def persistent_load(self, pid: Any) -> Any:
                    # ('storage', storage class, key, location, numel): raw bytes at <root>/data/<key>
                    if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
                        raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.60}")
                    if not isinstance(pid[1], StorageType):
                        raise pickle.UnpicklingError(f"storage of unknown type {pid[1]!r:.60}")
                    dtype = pid[1].dtype
                    raw = torch.frombuffer(bytearray(zf.read(f"{root}/data/{pid[2]}")), dtype=torch.uint8)
                    storage = raw.to(device).untyped_storage()
                    return torch.storage.TypedStorage(wrap_storage=storage, dtype=dtype, _internal=True)

            return ZipUnpickler(io.BytesIO(zf.read(pkl))).load()
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, StopIteration, EOFError, ValueError,
            TypeError, AttributeError, IndexError, RuntimeError) as err:
        raise WeightsError(f"{path.name} is not a readable torch checkpoint ({short_reason(err)}): it is truncated "
                           "or corrupt; download it again") from None


def load_legacy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` without importing or running anything it names (see RestrictedUnpickler)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise WeightsError(f"{path.name} is not a readable pickle ({short_reason(err)}): it is truncated or corrupt") from None
