"""Find a weights source and load it safely.

A source is a local file, a local folder, or a hub repo id (`owner/name`, optionally
`owner/name@revision`), with an optional file name inside it. Files load as:

- `.safetensors`: memory-mapped, straight to the requested device and dtype;
- `.bin .pt .pth .ckpt`: `torch.load(weights_only=True)`, which refuses code in the file; a `.ckpt`
  it refuses for naming a class (old Lightning checkpoints hold callback objects) is read again by
  the restricted unpickler below, so its tensors load and its objects stay inert;
- `.pkl` (legacy pickles, e.g. NVlabs networks): `load_legacy_pickle`, a restricted unpickler
  that rebuilds tensors and plain containers and turns every other class into an inert record.

Every failure a user can cause is a `WeightsError` with one line: what, why, what to do.
"""
from __future__ import annotations

import _compat_pickle
import io
import json
import os
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from utils.errors import ConversionError, WeightsError
from utils.io import atomic_path

SAFETENSORS = (".safetensors",)
TORCH_FILES = (".bin", ".pt", ".pth", ".ckpt")
PICKLE_FILES = (".pkl", ".pickle")
CHECKPOINT_SUFFIXES = SAFETENSORS + TORCH_FILES + PICKLE_FILES
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?$")
HUB_URL = "https://huggingface.co"

# -- resolving a source ---------------------------------------------------------------------------


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return env.strip().lower() in {"1", "true", "yes", "on"} or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_cache_dir() -> str:
    """The huggingface_hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def split_hub_id(source: str) -> tuple[str, str | None]:
    """'owner/name@rev' -> ('owner/name', 'rev')."""
    repo, _, revision = source.partition("@")
    return repo, revision or None


def resolve(source: str | os.PathLike, filename: str | None = None, revision: str | None = None,
            token: str | bool | None = None, allow_patterns: Iterable[str] | None = None) -> Path:
    """A local path for `source`: the file or folder itself, or a download into the hub cache.

    With `filename`, a single file (inside a local folder or a repo); without, the folder
    (for a repo, a snapshot limited to `allow_patterns`). Offline mode reads only the cache.
    """
    path = Path(os.path.expanduser(str(source)))
    if path.exists():
        if filename is not None and path.is_dir():
            target = path / filename
            if not target.exists():
                raise WeightsError(f"'{filename}' is not in the folder {path}: check the folder or pass the file itself")
            return target
        return path
    text = str(source)
    # 'ckpts/model.safetensors' matches the repo id pattern, but a file suffix says it was meant as a path.
    looks_like_file = Path(text).suffix.lower() in CHECKPOINT_SUFFIXES
    if not HUB_ID.match(text) or text.startswith((".", "/", "~")) or text.count("/") != 1 or looks_like_file:
        raise WeightsError(f"weights not found: '{text}' is neither an existing file or folder nor a hub repo id "
                           "(owner/name): check the path")
    repo_id, rev_in_id = split_hub_id(text)
    return _download(repo_id, filename, revision or rev_in_id, token, allow_patterns)


def _download(repo_id: str, filename: str | None, revision: str | None, token: str | bool | None,
              allow_patterns: Iterable[str] | None) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub import errors as hub_errors

    offline = is_offline()
    what = f"{repo_id}/{filename}" if filename else repo_id
    hub_url = _hub_url()
    try:
        if filename is not None:
            return Path(hf_hub_download(repo_id, filename, revision=revision, token=token,
                                        cache_dir=hub_cache_dir(), local_files_only=offline))
        return Path(snapshot_download(repo_id, revision=revision, token=token, cache_dir=hub_cache_dir(),
                                      allow_patterns=list(allow_patterns) if allow_patterns else None,
                                      local_files_only=offline))
    except hub_errors.GatedRepoError:
        raise WeightsError(f"{repo_id} is a gated repo and no token with access was found: accept its terms at "
                           f"{hub_url}/{repo_id}, then run `hf auth login` or set HF_TOKEN") from None
    except hub_errors.RevisionNotFoundError:
        raise WeightsError(f"revision '{revision}' does not exist in {repo_id}: check the branch, tag or commit") from None
    except hub_errors.RepositoryNotFoundError:
        raise WeightsError(f"hub repo '{repo_id}' was not found (or is private): check the id, or pass a local "
                           "file or folder") from None
    except (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled):
        reason = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the hub cannot be reached"
        raise WeightsError(f"{what} is not in the local cache and {reason}: download it once with network "
                           f"(`hf download {repo_id}`), or pass a local path") from None
    except hub_errors.EntryNotFoundError:
        raise WeightsError(f"'{filename}' is not a file of {repo_id}: check the file name on {hub_url}/{repo_id}") from None
    except OSError as err:  # connection failures surface as OSError subclasses
        raise WeightsError(f"{what} could not be fetched ({_short(err)}): check the network, or pass a local "
                           "path") from None


def _hub_url() -> str:
    """The hub the user is configured for (HF_ENDPOINT, e.g. a mirror), for links in messages."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", getattr(constants, "ENDPOINT", HUB_URL)).rstrip("/")


# -- reading files --------------------------------------------------------------------------------


def load_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None, unwrap: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint file (or a sharded diffusers folder) as a flat dict.

    Floating tensors are cast to `dtype` when given. With `unwrap`, the usual wrappers
    ({'state_dict': ...}, {'model': ...}, {'module': ...}) are taken off.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"checkpoint not found: {path}: check the path")
    if path.is_dir():
        return load_folder_state_dict(path, device=device, dtype=dtype)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS:
        sd = _load_safetensors(path, device)
    elif suffix in TORCH_FILES:
        sd = _torch_load(path, device, restricted_fallback=suffix == ".ckpt")
    elif suffix in PICKLE_FILES:
        sd = load_legacy_pickle(path)  # unwrapped below, before flattening, so wrapper names do not prefix keys
    else:
        raise WeightsError(f"{path.name} is not a checkpoint: expected one of {', '.join(CHECKPOINT_SUFFIXES)}")
    if unwrap:
        sd = unwrap_state_dict(sd)
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        sd = flatten_tensors(sd)
    if not sd:
        raise WeightsError(f"{path.name} holds no tensors: it is not a model checkpoint")
    return cast_state_dict(dict(sd), dtype)


def _load_safetensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise WeightsError(f"{path.name} is not a readable safetensors file ({_short(err)}): it is truncated or "
                           "corrupt; download it again") from None


def _torch_load(path: Path, device: str | torch.device, restricted_fallback: bool = False) -> Any:
    """torch.load(weights_only=True); with `restricted_fallback`, a file that it refuses for naming a
    class (old Lightning .ckpt files carry callback objects) is read by the restricted unpickler."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _weights_only_reason(err)
        if restricted_fallback and reason.startswith("unsupported global") and zipfile.is_zipfile(path):
            return load_torch_zip_restricted(path, device)
        # Every weights_only failure mentions weights_only; only a refused global names "GLOBAL".
        # Anything else (e.g. "Unsupported operand") means the bytes are not a torch pickle at all.
        if reason.startswith("unsupported global"):
            raise WeightsError(f"{path.name} contains Python objects that a safe load refuses "
                               f"({reason}): convert it to safetensors with its original code, or use a "
                               "trusted copy in safetensors format") from None
        raise WeightsError(f"{path.name} is not a readable torch checkpoint ({reason}): it is truncated, "
                           "corrupt or not a checkpoint; download it again") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise WeightsError(f"{path.name} is not a readable torch checkpoint ({_short(err)}): it is truncated "
                           "or corrupt; download it again") from None


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:160] or type(err).__name__


def _weights_only_reason(err: BaseException) -> str:
    """The informative part of torch's long weights_only message (the rest is boilerplate)."""
    msg = str(err)
    refused = re.search(r"GLOBAL ([\w.]+)", msg)
    if refused:
        return f"unsupported global {refused.group(1)}"
    if "WeightsUnpickler error:" in msg:
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue")
    useful = [p.strip() for p in msg.split("\n\n") if p.strip() and not p.strip().startswith(boilerplate)]
    return " ".join((useful[0] if useful else msg).split())[:160] or type(err).__name__


def load_folder_state_dict(folder: str | os.PathLike, name: str = "diffusion_pytorch_model",
                           device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """A diffusers/transformers component folder: one file, or shards listed in an index json."""
    folder = Path(folder)
    candidates = [f"{name}.safetensors", f"{name}.safetensors.index.json", "model.safetensors",
                  "model.safetensors.index.json", f"{name}.bin", "pytorch_model.bin",
                  "pytorch_model.bin.index.json"]
    for cand in candidates:
        p = folder / cand
        if not p.exists():
            continue
        if p.name.endswith(".index.json"):
            shards = sorted(set(json.loads(p.read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for shard in shards:
                sd.update(load_state_dict(folder / shard, device=device, dtype=dtype, unwrap=False))
            return sd
        return load_state_dict(p, device=device, dtype=dtype, unwrap=False)
    raise WeightsError(f"no weights file in {folder}: expected {name}.safetensors or model.safetensors "
                       "(or a sharded index)")


def cast_state_dict(sd: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Cast floating tensors (fp8 included) to `dtype`; integer buffers stay as they are."""
    if dtype is None:
        return sd
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}


def unwrap_state_dict(obj: Any, keys: tuple[str, ...] = ("state_dict", "model", "module", "params")) -> Any:
    """Take off the dicts that trainers wrap a state dict in."""
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in keys if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a nest of dicts, lists and unpickled records, keyed by its dotted path."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}{k}."))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten_tensors(v, f"{prefix}{i}."))
    elif isinstance(obj, PickledObject):
        out.update(flatten_tensors(obj.state, prefix))
    return out


# -- legacy pickles -------------------------------------------------------------------------------


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
        raise WeightsError(f"{path.name} is not a readable torch checkpoint ({_short(err)}): it is truncated "
                           "or corrupt; download it again") from None


def load_legacy_pickle(path: str | os.PathLike) -> Any:
    """Unpickle `path` without importing or running anything it names (see RestrictedUnpickler)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise WeightsError(f"{path.name} is not a readable pickle ({_short(err)}): it is truncated or corrupt") from None


# -- putting weights into a model ----------------------------------------------------------------


def key_report(missing: Iterable[str], unexpected: Iterable[str], limit: int = 6) -> str:
    """'missing: a, b (+3 more); unexpected: c' for conversion errors."""
    parts = []
    for label, keys in (("missing", sorted(missing)), ("unexpected", sorted(unexpected))):
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            parts.append(f"{label}: {', '.join(keys[:limit])}{more}")
    return "; ".join(parts)


def check_keys(expected: Iterable[str], got: Iterable[str], what: str = "checkpoint") -> None:
    """Raise a ConversionError naming missing and unexpected keys when the two sets differ."""
    expected, got = set(expected), set(got)
    if expected != got:
        raise ConversionError(f"the {what} does not match the model ({key_report(expected - got, got - expected)}): "
                              "check that the weights belong to this model and preset")


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
              what: str = "checkpoint", assign: bool | None = None) -> torch.nn.Module:
    """Load converted weights; a module on the meta device takes the tensors themselves (assign)."""
    expected = module.state_dict()
    if strict:
        check_keys(expected.keys(), state_dict.keys(), what)
    bad = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state_dict.items()
           if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if bad:
        more = f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""
        raise ConversionError(f"the {what} has tensors of the wrong shape ({'; '.join(bad[:4])}{more}): "
                              "the weights belong to another size or preset of this model")
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(dict(state_dict), strict=strict, assign=on_meta if assign is None else assign)
    return module


# -- the native format: safetensors with the config json in its metadata ------------------------------

def config_to_json(config: Any) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def config_from_json(cls: type, text: str) -> Any:
    data = json.loads(text)
    names = {f.name for f in fields(cls)}
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
    return cls(**data)


def read_safetensors_config(path: Path, cls: type) -> Any | None:
    """The config stored in a native safetensors file's metadata, if any."""
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return config_from_json(cls, meta["config"]) if "config" in meta else None


def save_native(path: str | Path, state_dict: dict[str, torch.Tensor], config: Any) -> Path:
    """Write a native checkpoint: safetensors with the config json in its metadata."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp),
                  metadata={"config": config_to_json(config), "format": "cv-generative"})
    return Path(path)
