"""Where a weights source is: a local path, or a hub repo id resolved through the huggingface_hub cache.

One offline rule for the whole zoo: huggingface_hub's own (`HF_HUB_OFFLINE=1`, or its constant).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from utils.errors import WeightsError, short_reason
from utils.weights.files import CHECKPOINT_SUFFIXES

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?$")
HUB_URL = "https://huggingface.co"

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
        raise WeightsError(f"{what} could not be fetched ({short_reason(err)}): check the network, or pass a local "
                           "path") from None


def _hub_url() -> str:
    """The hub the user is configured for (HF_ENDPOINT, e.g. a mirror), for links in messages."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT", getattr(constants, "ENDPOINT", HUB_URL)).rstrip("/")
