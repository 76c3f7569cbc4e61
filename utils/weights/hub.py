"""Where a weights source is: a local path, or a hub repo id resolved through the huggingface_hub cache.

One offline rule for every download of the zoo (hub repos, open_clip weights, the LPIPS backbone,
the FID Inception): huggingface_hub's own, `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`), as its
constants read it. Offline, only caches are read. Online, a host that cannot be reached is found
out by a short connect probe (`reachable`, at most PROBE_TIMEOUT seconds) instead of the client's
retries (~23 s for the hub): then, too, only caches are read, and a miss is one line.
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable

from utils.errors import WeightsError, short_reason
from utils.weights.files import CHECKPOINT_SUFFIXES

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?$")
HUB_URL = "https://huggingface.co"

class MissingHubFile(WeightsError):
    """The hub repo exists but holds no file of that name (callers may try another name)."""


PROBE_TIMEOUT = 2.0
"""Seconds the connect probe of `reachable` waits (name lookup included) before calling a host unreachable."""
_STALL_MEMORY_S = 30.0
_stalled: dict[tuple[str, int], float] = {}  # (host, port) -> when a probe of it last timed out


def is_offline() -> bool:
    """huggingface_hub's offline rule: HF_HUB_OFFLINE (else TRANSFORMERS_OFFLINE) is true, read as
    `huggingface_hub.constants` reads it, either in its constant (set at import) or in the environment now."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().upper() in constants.ENV_VARS_TRUE_VALUES or bool(constants.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub huggingface_hub talks to (its ENDPOINT constant: HF_ENDPOINT at import, e.g. a mirror, or
    huggingface.co): what the connect probe tries and what messages link to."""
    from huggingface_hub import constants

    return str(getattr(constants, "ENDPOINT", HUB_URL)).rstrip("/")


def _connect_target(url: str) -> tuple[str, int] | None:
    """(host, port) a client connects to for `url`: the proxy of its scheme when one is set for it."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if p.hostname:
            return p.hostname, p.port or (443 if p.scheme == "https" else 80)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the host of `url` (or its proxy) opens within `timeout` seconds.

    The probe runs in a daemon thread so that a stalled name lookup cannot hold the caller
    longer than `timeout`. A host that gave no answer in time is taken as unreachable for the
    next 30 s (so a pipeline resolving five files waits once); quick answers are not remembered.
    """
    target = _connect_target(url)
    if target is None:
        return False
    stalled = _stalled.get(target)
    if stalled is not None and time.monotonic() - stalled < _STALL_MEMORY_S:
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection(target, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, name="cvg-connect-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        _stalled[target] = time.monotonic()
    return bool(result and result[0])


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
    # Online but the hub does not answer a connect: read the cache, as offline, without the retries.
    unreachable = not offline and not reachable(hub_endpoint())
    what = f"{repo_id}/{filename}" if filename else repo_id
    hub_url = hub_endpoint()
    try:
        if filename is not None:
            return Path(hf_hub_download(repo_id, filename, revision=revision, token=token,
                                        cache_dir=hub_cache_dir(), local_files_only=offline or unreachable))
        return Path(snapshot_download(repo_id, revision=revision, token=token, cache_dir=hub_cache_dir(),
                                      allow_patterns=list(allow_patterns) if allow_patterns else None,
                                      local_files_only=offline or unreachable))
    except hub_errors.GatedRepoError:
        where = _token_in_use(token)
        if where is None:
            raise WeightsError(f"{repo_id} is a gated repo and no Hugging Face token was found: accept its terms at "
                               f"{hub_url}/{repo_id}, then run `hf auth login` or set HF_TOKEN") from None
        raise WeightsError(f"{repo_id} is a gated repo and the token in use ({where}) has no access to it: accept its "
                           f"terms at {hub_url}/{repo_id} with that token's account, or set HF_TOKEN to a token "
                           "that has access") from None
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
        raise MissingHubFile(f"'{filename}' is not a file of {repo_id}: check the file name on {hub_url}/{repo_id}") from None
    except OSError as err:  # connection failures surface as OSError subclasses
        raise WeightsError(f"{what} could not be fetched ({short_reason(err)}): check the network, or pass a local "
                           "path") from None


def _token_in_use(token: str | bool | None) -> str | None:
    """Where the token sent with a hub request came from, or None when none was sent."""
    if token is False:
        return None
    if isinstance(token, str) and token:
        return "passed in"
    from huggingface_hub import get_token

    if not get_token():
        return None
    return "from HF_TOKEN" if os.environ.get("HF_TOKEN") else "saved by `hf auth login`"


def fetch_url(url: str, target: str | os.PathLike, what: str, download: bool | None = None,
              instead: str = "") -> Path:
    """`target` when it exists, else downloaded there from `url` (atomically) when allowed.

    `download=None` follows the offline rule (`is_offline`); an unreachable host fails at once
    (connect probe) rather than after the client's timeouts. `instead` names the alternative
    a user has (e.g. "or pass --weights PATH"), for the one-line errors.
    """
    import torch

    path = Path(target)
    if path.exists():
        return path
    tail = f", {instead}" if instead else ""
    if download is None:
        download = not is_offline()
    if not download:
        raise WeightsError(f"{what} is not in {path.parent} and downloading is off (offline mode, HF_HUB_OFFLINE): "
                           f"fetch {url} into that folder{tail}")
    host = urllib.parse.urlsplit(url).hostname or url
    if not reachable(url):
        raise WeightsError(f"{what} is not in {path.parent} and {host} cannot be reached: fetch {url} into that "
                           f"folder with network{tail}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), progress=True)  # writes a temporary file, then renames
    except OSError as err:
        raise WeightsError(f"could not download {what} from {url} ({short_reason(err, 120)}): check the network, "
                           f"or put the file in {path.parent}{tail}") from None
    return path


def locate(source: str | os.PathLike, patterns: Iterable[str] | None = None, what: str | None = None, *,
           filename: str | None = None) -> Path:
    """A local file or folder for `source`: the path itself when it exists, else the hub repo fetched.

    From a repo, `filename` fetches that one file, `patterns` a snapshot limited to them (a diffusers
    layout's config and weights). `what` names the weights in front of any error ("SDXL weights 'x': ...").
    """
    path = Path(os.path.expanduser(str(source)))
    if path.exists():
        return path
    try:
        return resolve(str(source), filename=filename, allow_patterns=patterns)
    except WeightsError as err:
        if what is None:
            raise
        raise WeightsError(f"{what}: {err}") from None


def fetch_release(url: str, what: str, instead: str = "") -> Path:
    """A release file given by its URL (GitHub releases, a lab's server): downloaded once into the torch hub
    cache's checkpoints folder (`fetch_url`'s offline rule), read from there afterwards."""
    import torch

    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return fetch_url(url, target, f"{what} {target.name}", instead=instead)
