"""utils.weights: resolving every kind of source, loading every format, refusing unsafe pickles.

No test touches the network: hub ids resolve from a fake cache written in huggingface_hub's
real layout, and hub errors come from a tiny HTTP server on 127.0.0.1 that answers like the hub.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import save_file

from utils.errors import ConversionError, WeightsError
from utils.weights import (PickledObject, check_keys, flatten_tensors, is_offline, key_report,
                           load_folder_state_dict, load_into, load_legacy_pickle, load_state_dict,
                           load_torch_zip_restricted, resolve)
from utils.weights import hub
from utils.weights.hub import MissingHubFile, fetch_url, reachable

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def tiny_sd() -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.randn(4, 3, 3, 3), "conv.bias": torch.randn(4),
            "steps": torch.tensor([7], dtype=torch.int64)}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


@contextmanager
def one_line(cls: type[Exception], *fragments: str) -> Iterator[pytest.ExceptionInfo]:
    """Expect `cls` with a one-line message holding every fragment."""
    with pytest.raises(cls) as info:
        yield info
    msg = str(info.value)
    assert type(info.value) is cls, type(info.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


# -- a fake hub cache in huggingface_hub's layout -------------------------------------------------


def cache_repo(repo_id: str, files: dict[str, bytes], commit: str = COMMIT,
               refs: dict[str, str] | None = None) -> Path:
    """Write models--owner--name/{blobs,snapshots/<commit>,refs} as huggingface_hub does."""
    root = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    for rel, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref, target in (refs if refs is not None else {"main": commit}).items():
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(target)
    return root


def st_bytes(sd: dict[str, torch.Tensor], tmp_path: Path) -> bytes:
    path = tmp_path / "_tmp.safetensors"
    save_file(sd, str(path))
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)


# -- a fake hub server ----------------------------------------------------------------------------


class FakeHub:
    """Answers the hub's file and repo-info routes with the hub's status codes and X-Error-Code."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, bytes]] = {}  # repo id -> {path: bytes}, branch main = COMMIT
        self.gated: set[str] = set()
        self.access: dict[str, set[str]] = {}  # gated repo id -> tokens whose account accepted its terms
        self.requests: list[str] = []
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:
                self.answer()

            def do_GET(self) -> None:
                self.answer()

            def reply(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def error(self, code: int, error_code: str) -> None:
                self.reply(code, {"X-Error-Code": error_code, "X-Error-Message": error_code})

            def answer(self) -> None:
                path = self.path.split("?", 1)[0]
                hub.requests.append(f"{self.command} {path}")
                parts = path.strip("/").split("/")
                api = parts[:2] == ["api", "models"]
                if api:
                    parts = parts[2:]
                if len(parts) < 4:
                    return self.error(404, "RepoNotFound")
                repo, kind, revision, rel = "/".join(parts[:2]), parts[2], parts[3], "/".join(parts[4:])
                if repo not in hub.files:
                    return self.error(401, "RepoNotFound")  # the hub answers 401 for unknown and private repos
                if repo in hub.gated:
                    auth = self.headers.get("authorization") or ""
                    if not auth:
                        return self.error(401, "GatedRepo")
                    if auth.removeprefix("Bearer ") not in hub.access.get(repo, set()):
                        return self.error(403, "GatedRepo")  # a valid token whose account has no access
                if revision not in ("main", COMMIT):
                    return self.error(404, "RevisionNotFound")
                if api and kind == "revision":
                    body = json.dumps({"id": repo, "sha": COMMIT,
                                       "siblings": [{"rfilename": f} for f in hub.files[repo]]}).encode()
                    return self.reply(200, {"Content-Type": "application/json"}, body)
                if api and kind == "tree":
                    body = json.dumps([{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                       for f, b in hub.files[repo].items()]).encode()
                    return self.reply(200, {"Content-Type": "application/json"}, body)
                if kind != "resolve" or rel not in hub.files[repo]:
                    return self.error(404, "EntryNotFound")
                data = hub.files[repo][rel]
                return self.reply(200, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'},
                                  data)

        return Handler


@pytest.fixture
def fake_hub(monkeypatch) -> Iterator[FakeHub]:
    """A hub on 127.0.0.1 that huggingface_hub talks to, online; stopped when the test ends."""
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    _point_hub_at(monkeypatch, hub.url)
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _point_hub_at(monkeypatch, url: str) -> None:
    """Online mode against `url`: the env for our code, the module constants for huggingface_hub's."""
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "ENDPOINT", url)
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")


# -- resolving local sources ----------------------------------------------------------------------


def test_resolve_local_file(tmp_path):
    sd = tiny_sd()
    f = tmp_path / "model.safetensors"
    save_file(sd, str(f))
    assert resolve(f) == f
    assert resolve(str(f)) == f
    assert_same(load_state_dict(resolve(f)), sd)


def test_resolve_local_folder_and_filename(tmp_path):
    (tmp_path / "unet").mkdir()
    save_file(tiny_sd(), str(tmp_path / "unet" / "diffusion_pytorch_model.safetensors"))
    assert resolve(tmp_path) == tmp_path
    assert resolve(tmp_path, filename="unet/diffusion_pytorch_model.safetensors") == \
        tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    with one_line(WeightsError, "model.ckpt", str(tmp_path)):
        resolve(tmp_path, filename="model.ckpt")


@pytest.mark.parametrize("source", ["{tmp}/missing.safetensors", "{tmp}/missing_dir", "./nope/model.pt",
                                    "ckpts/model.safetensors", "~/surely-not-here-4711.ckpt", "a/b/c"])
def test_resolve_path_not_found(tmp_path, offline, source):
    source = source.format(tmp=tmp_path)
    with one_line(WeightsError, "weights not found", source):
        resolve(source)


# -- resolving hub ids from the cache (offline) ---------------------------------------------------


def test_resolve_hub_id_from_cache(tmp_path, offline):
    sd = tiny_sd()
    data = st_bytes(sd, tmp_path)
    root = cache_repo("owner/name", {"model.safetensors": data, "unet/config.json": b"{}"})
    snapshot = root / "snapshots" / COMMIT

    got = resolve("owner/name", filename="model.safetensors")
    assert got == snapshot / "model.safetensors"
    assert_same(load_state_dict(got), sd)
    assert resolve("owner/name") == snapshot
    assert resolve("owner/name", filename="unet/config.json") == snapshot / "unet" / "config.json"


def test_resolve_hub_id_with_revision(tmp_path, offline):
    old, new = tiny_sd(), tiny_sd()
    cache_repo("owner/name", {"model.safetensors": st_bytes(new, tmp_path)}, commit=COMMIT)
    root = cache_repo("owner/name", {"model.safetensors": st_bytes(old, tmp_path)}, commit=OTHER_COMMIT,
                      refs={"v1": OTHER_COMMIT})
    old_file = root / "snapshots" / OTHER_COMMIT / "model.safetensors"

    for source, kw in [("owner/name@v1", {}), (f"owner/name@{OTHER_COMMIT}", {}), ("owner/name", {"revision": "v1"}),
                       ("owner/name@main", {"revision": "v1"})]:  # an explicit revision wins over @rev
        assert resolve(source, filename="model.safetensors", **kw) == old_file, (source, kw)
    assert resolve("owner/name@v1") == root / "snapshots" / OTHER_COMMIT
    assert_same(load_state_dict(resolve("owner/name@v1", filename="model.safetensors")), old)
    assert_same(load_state_dict(resolve("owner/name", filename="model.safetensors")), new)


@pytest.mark.parametrize("filename", [None, "model.safetensors"])
def test_offline_with_nothing_cached(offline, filename):
    with one_line(WeightsError, "owner/name", "not in the local cache", "offline", "hf download owner/name"):
        resolve("owner/name", filename=filename)


def test_offline_cached_repo_without_the_file_or_revision(tmp_path, offline):
    cache_repo("owner/name", {"model.safetensors": st_bytes(tiny_sd(), tmp_path)})
    with one_line(WeightsError, "owner/name/vae.safetensors", "not in the local cache", "offline"):
        resolve("owner/name", filename="vae.safetensors")
    with one_line(WeightsError, "owner/name", "not in the local cache"):
        resolve("owner/name@v2")


# -- hub errors, through huggingface_hub's real code against a local server --------------------


def test_hub_download_through_real_client(tmp_path, fake_hub):
    sd = tiny_sd()
    fake_hub.files["owner/name"] = {"model.safetensors": st_bytes(sd, tmp_path), "config.json": b"{}"}
    got = resolve("owner/name", filename="model.safetensors")
    assert got.is_relative_to(os.environ["HF_HUB_CACHE"])
    assert got.parent.name == COMMIT
    assert_same(load_state_dict(got), sd)
    assert "HEAD /owner/name/resolve/main/model.safetensors" in fake_hub.requests

    folder = resolve("owner/name", allow_patterns=["*.json"])
    assert folder.name == COMMIT and (folder / "config.json").read_bytes() == b"{}"
    assert "GET /api/models/owner/name/revision/main" in fake_hub.requests


@pytest.mark.parametrize("filename", [None, "model.safetensors"])
def test_hub_repo_not_found(fake_hub, filename):
    with one_line(WeightsError, "'owner/missing' was not found", "check the id"):
        resolve("owner/missing", filename=filename)
    assert any("/owner/missing/" in r for r in fake_hub.requests)  # the server was asked


@pytest.mark.parametrize("filename", [None, "model.safetensors"])
def test_hub_gated_repo_without_token(tmp_path, fake_hub, filename):
    fake_hub.files["org/gated"] = {"model.safetensors": st_bytes(tiny_sd(), tmp_path)}
    fake_hub.gated.add("org/gated")
    with one_line(WeightsError, "org/gated is a gated repo", "no Hugging Face token was found", "HF_TOKEN",
                  f"{fake_hub.url}/org/gated"):
        resolve("org/gated", filename=filename)


@pytest.mark.parametrize("filename", [None, "model.safetensors"])
def test_hub_gated_repo_with_a_token_that_lacks_access(tmp_path, fake_hub, monkeypatch, filename):
    sd = tiny_sd()
    fake_hub.files["org/gated"] = {"model.safetensors": st_bytes(sd, tmp_path)}
    fake_hub.gated.add("org/gated")
    fake_hub.access["org/gated"] = {"hf_granted"}
    monkeypatch.setenv("HF_TOKEN", "hf_refused")
    with one_line(WeightsError, "org/gated is a gated repo", "the token in use (from HF_TOKEN) has no access",
                  f"{fake_hub.url}/org/gated") as info:
        resolve("org/gated", filename=filename)
    assert "no Hugging Face token was found" not in str(info.value)
    with one_line(WeightsError, "the token in use (passed in) has no access"):
        resolve("org/gated", filename=filename, token="hf_other")
    # the same call with a token whose account accepted the terms downloads
    got = resolve("org/gated", filename=filename, token="hf_granted")
    assert_same(load_state_dict(got if filename else got / "model.safetensors"), sd)


@pytest.mark.parametrize("filename", [None, "model.safetensors"])
def test_hub_missing_revision(tmp_path, fake_hub, filename):
    fake_hub.files["owner/name"] = {"model.safetensors": st_bytes(tiny_sd(), tmp_path)}
    with one_line(WeightsError, "revision 'v9' does not exist in owner/name"):
        resolve("owner/name@v9", filename=filename)


def test_hub_missing_file_in_repo(tmp_path, fake_hub):
    fake_hub.files["owner/name"] = {"model.safetensors": st_bytes(tiny_sd(), tmp_path)}
    # MissingHubFile (a WeightsError) lets a caller try another file name, as open_clip's weights need
    with one_line(MissingHubFile, "'vae.bin' is not a file of owner/name", f"{fake_hub.url}/owner/name"):
        resolve("owner/name", filename="vae.bin")


def _closed_port() -> int:
    with socket.socket() as s:  # a port that was free a moment ago: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hub_unreachable_and_nothing_cached(monkeypatch):
    # Without the connect probe, the hub client retries a refused connection 5 times with a growing
    # back-off (~23 s) before failing; nothing is patched here, so the clock measures the real path.
    _point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with one_line(WeightsError, "owner/name/model.safetensors", "not in the local cache", "cannot be reached"):
        resolve("owner/name", filename="model.safetensors")
    with one_line(WeightsError, "owner/name is not in the local cache", "cannot be reached"):
        resolve("owner/name")
    assert time.perf_counter() - start < 5


def test_hub_unreachable_reads_the_cache(tmp_path, monkeypatch):
    sd = tiny_sd()
    root = cache_repo("owner/name", {"model.safetensors": st_bytes(sd, tmp_path)})
    _point_hub_at(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    got = resolve("owner/name", filename="model.safetensors")
    assert got == root / "snapshots" / COMMIT / "model.safetensors"
    assert_same(load_state_dict(got), sd)
    assert resolve("owner/name") == root / "snapshots" / COMMIT
    assert time.perf_counter() - start < 5


def test_probe_gives_up_on_a_stalled_name_lookup(monkeypatch):
    release = threading.Event()
    looked_up: list[str] = []

    def stalled(host, *args, **kwargs):  # a resolver that never answers (no network, a dead DNS server)
        looked_up.append(host)
        release.wait(30)
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", stalled)
    monkeypatch.setattr(hub, "_stalled", {})
    try:
        start = time.perf_counter()
        assert not reachable("https://hub.invalid/some/file", timeout=0.3)
        assert 0.25 < time.perf_counter() - start < 2
        start = time.perf_counter()  # remembered: the next call does not wait again
        assert not reachable("https://hub.invalid/other", timeout=0.3)
        assert time.perf_counter() - start < 0.1 and looked_up == ["hub.invalid"]
    finally:
        release.set()


def test_probe_answers(fake_hub):
    assert reachable(fake_hub.url)
    assert not reachable(f"http://127.0.0.1:{_closed_port()}")


def test_probe_goes_to_the_proxy(monkeypatch, fake_hub):
    # a client behind a proxy connects to the proxy, not to the host: so does the probe
    monkeypatch.setenv("https_proxy", fake_hub.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert reachable(f"https://127.0.0.1:{_closed_port()}/file")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{_closed_port()}")
    assert not reachable(fake_hub.url.replace("http://", "https://"))


@pytest.mark.parametrize("env, expected", [("1", True), ("true", True), ("ON", True), ("yes", True), ("0", False),
                                           ("false", False), ("", False)])
def test_offline_rule_is_huggingface_hubs(monkeypatch, env, expected):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", env)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert is_offline() is expected
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", env)  # huggingface_hub's fallback variable
    assert is_offline() is expected
    monkeypatch.setenv("CVG_OFFLINE", "1")  # no variable of our own
    assert is_offline() is expected
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # huggingface_hub's constant, as read at import
    assert is_offline()


# -- downloads by URL (LPIPS backbone, FID Inception) ----------------------------------------------


def test_fetch_url_downloads_once(tmp_path, fake_hub):
    fake_hub.files["owner/name"] = {"net.pth": b"weights"}
    url = f"{fake_hub.url}/owner/name/resolve/main/net.pth"
    target = tmp_path / "checkpoints" / "net.pth"
    assert fetch_url(url, target, "the net") == target and target.read_bytes() == b"weights"
    n = len(fake_hub.requests)
    assert fetch_url(url, target, "the net", download=False) == target  # cached: no request, even offline
    assert len(fake_hub.requests) == n
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_fetch_url_offline_and_unreachable_are_one_line(tmp_path, monkeypatch, offline):
    target = tmp_path / "checkpoints" / "net.pth"
    with one_line(WeightsError, "the net is not in", "offline", "https://example.invalid/net.pth", "or pass X"):
        fetch_url("https://example.invalid/net.pth", target, "the net", instead="or pass X")
    url = f"http://127.0.0.1:{_closed_port()}/net.pth"
    start = time.perf_counter()
    with one_line(WeightsError, "the net is not in", "127.0.0.1 cannot be reached", url):
        fetch_url(url, target, "the net", download=True)
    assert time.perf_counter() - start < 5 and not target.parent.exists()


# -- loading formats ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_safetensors_to_dtype_and_device(tmp_path, dtype, device):
    sd = tiny_sd()
    save_file(sd, str(tmp_path / "m.safetensors"))
    got = load_state_dict(tmp_path / "m.safetensors", device=device, dtype=dtype)
    assert got["conv.weight"].dtype == dtype and got["conv.bias"].dtype == dtype
    assert got["steps"].dtype == torch.int64  # integer buffers are never cast
    assert all(v.device == torch.device(device) for v in got.values())
    assert torch.equal(got["conv.weight"], sd["conv.weight"].to(dtype))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_safetensors_straight_to_cuda(tmp_path):
    sd = tiny_sd()
    save_file(sd, str(tmp_path / "m.safetensors"))
    got = load_state_dict(tmp_path / "m.safetensors", device="cuda", dtype=torch.float16)
    assert all(v.is_cuda for v in got.values())
    assert torch.equal(got["conv.weight"].cpu(), sd["conv.weight"].half())


def test_safetensors_keeps_dtype_without_request(tmp_path):
    sd = {"a": torch.randn(3).to(torch.bfloat16), "b": torch.randn(2).half()}
    save_file(sd, str(tmp_path / "m.safetensors"))
    assert_same(load_state_dict(tmp_path / "m.safetensors"), sd)


def test_safetensors_fp8_cast_up(tmp_path):
    fp8 = torch.tensor([0.5, -1.0, 2.0, 448.0]).to(torch.float8_e4m3fn)
    save_file({"w": fp8, "scale": torch.tensor([2.0])}, str(tmp_path / "m.safetensors"))
    raw = load_state_dict(tmp_path / "m.safetensors")
    assert raw["w"].dtype == torch.float8_e4m3fn
    got = load_state_dict(tmp_path / "m.safetensors", dtype=torch.float32)
    assert got["w"].dtype == torch.float32
    assert got["w"].tolist() == [0.5, -1.0, 2.0, 448.0]
    assert load_state_dict(tmp_path / "m.safetensors", dtype=torch.bfloat16)["w"].dtype == torch.bfloat16


WRAPPERS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3, "global_step": 1000},
    "model": lambda sd: {"model": sd, "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}}},
    "module": lambda sd: {"module": sd},
    "nested": lambda sd: {"state_dict": {"model": sd}, "epoch": 1},
}


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt"])
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_torch_files_and_wrappers(tmp_path, suffix, wrapper):
    sd = tiny_sd()
    path = tmp_path / f"model{suffix}"
    torch.save(WRAPPERS[wrapper](sd), path)
    assert_same(load_state_dict(path), sd)
    half = load_state_dict(path, dtype=torch.float16)
    assert half["conv.weight"].dtype == torch.float16 and half["steps"].dtype == torch.int64


def test_torch_legacy_format_file(tmp_path):
    sd = tiny_sd()
    torch.save({"state_dict": sd}, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)
    assert_same(load_state_dict(tmp_path / "old.ckpt"), sd)


def test_sharded_diffusers_folder(tmp_path):
    sd = {f"blocks.{i}.weight": torch.randn(2, 2) for i in range(4)}
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": ["blocks.0.weight", "blocks.1.weight"],
              "diffusion_pytorch_model-00002-of-00002.safetensors": ["blocks.2.weight", "blocks.3.weight"]}
    folder = tmp_path / "transformer"
    folder.mkdir()
    for name, keys in shards.items():
        save_file({k: sd[k] for k in keys}, str(folder / name))
    index = {"metadata": {"total_size": 64}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    assert_same(load_folder_state_dict(folder), sd)
    assert_same(load_state_dict(folder), sd)
    assert load_state_dict(folder, dtype=torch.bfloat16)["blocks.3.weight"].dtype == torch.bfloat16
    with one_line(WeightsError, "no weights file", "vae.safetensors"):
        load_folder_state_dict(tmp_path, name="vae")


def test_sharded_folder_with_a_missing_shard(tmp_path):
    save_file({"a": torch.ones(1)}, str(tmp_path / "model-00001-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with one_line(WeightsError, "model-00002-of-00002.safetensors"):
        load_folder_state_dict(tmp_path)


# -- broken and wrong files -----------------------------------------------------------------------


def test_truncated_safetensors(tmp_path):
    save_file(tiny_sd(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 5):
        (tmp_path / "cut.safetensors").write_bytes(data[:cut])
        with one_line(WeightsError, "cut.safetensors", "truncated or corrupt"):
            load_state_dict(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("zipped", [True, False])
def test_truncated_torch_file(tmp_path, zipped):
    torch.save(tiny_sd(), tmp_path / "full.pt", _use_new_zipfile_serialization=zipped)
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with one_line(WeightsError, "cut.pt", "truncated or corrupt"):
        load_state_dict(tmp_path / "cut.pt")


def test_empty_file(tmp_path):
    for name in ("empty.safetensors", "empty.pt", "empty.pkl"):
        (tmp_path / name).write_bytes(b"")
        with one_line(WeightsError, name):
            load_state_dict(tmp_path / name)


def _png_bytes(tmp_path: Path) -> bytes:
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "x.png")
    return (tmp_path / "x.png").read_bytes()


def test_png_given_as_checkpoint(tmp_path):
    png = _png_bytes(tmp_path)
    with one_line(WeightsError, "x.png is not a checkpoint", ".safetensors"):
        load_state_dict(tmp_path / "x.png")
    for name, frag in [("x.safetensors", "truncated or corrupt"), ("x.pt", "not a checkpoint"),
                       ("x.ckpt", "not a checkpoint"), ("x.pkl", "truncated or corrupt")]:
        (tmp_path / name).write_bytes(png)
        with one_line(WeightsError, name, frag):
            load_state_dict(tmp_path / name)


def test_checkpoint_without_tensors(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with one_line(WeightsError, "meta.pt holds no tensors"):
        load_state_dict(tmp_path / "meta.pt")


def test_missing_checkpoint(tmp_path):
    with one_line(WeightsError, "checkpoint not found", "gone.safetensors"):
        load_state_dict(tmp_path / "gone.safetensors")


# -- unsafe pickles -------------------------------------------------------------------------------


def write_marker(path: str) -> None:
    """The payload of the malicious files: proof that code from a file ran."""
    Path(path).write_text("pwned")


class WritesMarker:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (write_marker, (self.marker,))


class RunsShell:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("payload", [WritesMarker, RunsShell])
def test_payloads_are_real(tmp_path, payload):
    """Control: an unsafe load of the same payload does run it, so the tests below can fail."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("payload", [WritesMarker, RunsShell])
@pytest.mark.parametrize("suffix", [".pt", ".bin", ".pth"])
def test_malicious_torch_file_refused(tmp_path, payload, suffix):
    marker = tmp_path / "marker"
    path = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": tiny_sd(), "hook": payload(marker)}, path)
    name = "write_marker" if payload is WritesMarker else "system"
    with one_line(WeightsError, f"evil{suffix}", "safe load refuses", name):
        load_state_dict(path)
    assert not marker.exists()


class ModelCheckpoint:
    """Stands in for the Lightning callback that old .ckpt files (e.g. Stable Diffusion 1.x) carry."""

    def __init__(self) -> None:
        self.monitor, self.best_model_score = "val/loss", torch.tensor(0.25)


def test_old_lightning_ckpt_loads_through_restricted_unpickler(tmp_path):
    sd = tiny_sd() | {"half": torch.randn(2).half(), "view": torch.arange(12.0).view(3, 4)[:, 1:3]}
    ckpt = {"state_dict": sd, "callbacks": {"ModelCheckpoint": ModelCheckpoint()}, "epoch": 6}
    torch.save(ckpt, tmp_path / "sd.ckpt")
    got = load_state_dict(tmp_path / "sd.ckpt")  # weights_only refuses the callback; the fallback reads it
    assert_same(got, {k: v.contiguous() for k, v in sd.items()})
    assert load_state_dict(tmp_path / "sd.ckpt", dtype=torch.bfloat16)["half"].dtype == torch.bfloat16
    cb = load_torch_zip_restricted(tmp_path / "sd.ckpt")["callbacks"]["ModelCheckpoint"]
    assert isinstance(cb, PickledObject) and cb.cls.endswith("ModelCheckpoint") and cb["monitor"] == "val/loss"
    torch.save({"state_dict": sd, "cb": ModelCheckpoint()}, tmp_path / "sd.pt")
    with one_line(WeightsError, "sd.pt", "safe load refuses", "ModelCheckpoint"):  # only .ckpt falls back
        load_state_dict(tmp_path / "sd.pt")


@pytest.mark.parametrize("payload", [WritesMarker, RunsShell])
def test_malicious_ckpt_is_inert(tmp_path, payload):
    marker = tmp_path / "marker"
    sd = tiny_sd()
    torch.save({"state_dict": sd, "hook": payload(marker)}, tmp_path / "evil.ckpt")
    assert_same(load_state_dict(tmp_path / "evil.ckpt"), sd)
    hook = load_torch_zip_restricted(tmp_path / "evil.ckpt")["hook"]
    assert not marker.exists()
    assert isinstance(hook, PickledObject)
    assert hook.cls.endswith("write_marker" if payload is WritesMarker else "system")


def test_corrupt_ckpt_in_restricted_reader(tmp_path):
    torch.save({"state_dict": tiny_sd(), "cb": ModelCheckpoint()}, tmp_path / "x.ckpt")
    import zipfile

    with zipfile.ZipFile(tmp_path / "x.ckpt") as src, zipfile.ZipFile(tmp_path / "bad.ckpt", "w") as dst:
        for item in src.infolist():  # drop one tensor's bytes: a damaged archive that still opens
            if not item.filename.endswith("/data/0"):
                dst.writestr(item, src.read(item))
    with one_line(WeightsError, "bad.ckpt", "truncated or corrupt"):
        load_state_dict(tmp_path / "bad.ckpt")


@pytest.mark.parametrize("payload", [WritesMarker, RunsShell])
def test_malicious_pickle_is_inert(tmp_path, payload):
    marker = tmp_path / "marker"
    path = tmp_path / "network.pkl"
    with open(path, "wb") as f:
        pickle.dump(payload(marker), f)
    obj = load_legacy_pickle(path)
    assert not marker.exists()
    assert isinstance(obj, PickledObject)
    assert obj.cls.endswith("write_marker" if payload is WritesMarker else "system")
    assert str(marker) in " ".join(map(str, obj.args))


def test_malicious_pickle_next_to_tensors(tmp_path):
    marker = tmp_path / "marker"
    sd = tiny_sd()
    with open(tmp_path / "mixed.pkl", "wb") as f:
        pickle.dump({"G_ema": sd, "augment": WritesMarker(marker), "shell": RunsShell(marker)}, f)
    got = load_state_dict(tmp_path / "mixed.pkl")
    assert not marker.exists()
    assert_same(got, {f"G_ema.{k}": v for k, v in sd.items()})


def test_restricted_unpickler_blocks_builtins(tmp_path):
    # eval/exec/getattr/__import__ by GLOBAL, and with protocol 0's text opcodes.
    for proto in (0, 2, 4):
        for fn, args in [(eval, ("1+1",)), (exec, ("import os",)), (getattr, ("text", "upper")),
                         (__import__, ("os",))]:
            class Call:
                def __reduce__(self, fn=fn, args=args):
                    return (fn, args)

            (tmp_path / "b.pkl").write_bytes(pickle.dumps(Call(), protocol=proto))
            obj = load_legacy_pickle(tmp_path / "b.pkl")
            assert isinstance(obj, PickledObject) and obj.cls == f"builtins.{fn.__name__}", (proto, obj)
            assert obj.args == args  # the arguments are kept as plain data


# -- legacy pickles with real tensors -------------------------------------------------------------


class Network:
    """Stands in for an NVlabs-style network object pickled with its weights in attributes."""

    def __init__(self) -> None:
        self.params = {"mapping.fc0.weight": torch.randn(4, 4), "synthesis.b4.const": torch.randn(8, 2, 2)}
        self.buffers = [torch.arange(3), torch.nn.Parameter(torch.randn(2))]
        self.resolution = 4
        self.name = "G"


def test_legacy_pickle_of_tensors_in_dicts(tmp_path):
    sd = tiny_sd() | {"half": torch.randn(2).half(), "bf16": torch.randn(2).to(torch.bfloat16)}
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"state_dict": sd}, f)
    assert_same(load_state_dict(tmp_path / "plain.pkl"), sd)  # the wrapper comes off like for .ckpt
    assert sorted(load_state_dict(tmp_path / "plain.pkl", unwrap=False)) == sorted(f"state_dict.{k}" for k in sd)


@pytest.mark.parametrize("protocol", [0, 1, 2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_legacy_pickle_of_tensors_in_custom_objects(tmp_path, protocol):
    net = Network()
    with open(tmp_path / "network-snapshot.pkl", "wb") as f:
        pickle.dump({"G_ema": net, "training_set_kwargs": {"res": 4}}, f, protocol=protocol)
    obj = load_legacy_pickle(tmp_path / "network-snapshot.pkl")
    g = obj["G_ema"]
    assert isinstance(g, PickledObject) and g.cls == f"{Network.__module__}.Network"
    assert g["resolution"] == 4 and g["name"] == "G"
    flat = flatten_tensors(obj)
    expected = {f"G_ema.params.{k}": v for k, v in net.params.items()}
    expected |= {"G_ema.buffers.0": net.buffers[0], "G_ema.buffers.1": net.buffers[1].detach()}
    assert_same({k: v.detach() for k, v in flat.items()}, expected)
    sd = load_state_dict(tmp_path / "network-snapshot.pkl", dtype=torch.float16)
    assert sd["G_ema.params.synthesis.b4.const"].dtype == torch.float16
    assert sd["G_ema.buffers.0"].dtype == torch.int64


def test_corrupt_pickle(tmp_path):
    data = pickle.dumps({"a": torch.ones(3)})
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    with one_line(WeightsError, "cut.pkl", "truncated or corrupt"):
        load_state_dict(tmp_path / "cut.pkl")


# -- putting weights into modules -----------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 4)
        self.norm = torch.nn.LayerNorm(4)


def test_load_into_copies_values():
    src, dst = Tiny(), Tiny()
    load_into(dst, src.state_dict())
    assert_same(dst.state_dict(), src.state_dict())


def test_load_into_names_missing_and_unexpected_keys():
    sd = Tiny().state_dict()
    sd.pop("norm.bias")
    sd["head.weight"] = torch.zeros(1)
    with one_line(ConversionError, "missing: norm.bias", "unexpected: head.weight", "the unet checkpoint"):
        load_into(Tiny(), sd, what="unet checkpoint")


def test_load_into_non_strict_ignores_extra_keys():
    sd = Tiny().state_dict()
    sd["head.weight"] = torch.zeros(1)
    sd.pop("norm.bias")
    m = load_into(Tiny(), sd, strict=False)
    assert torch.equal(m.proj.weight, sd["proj.weight"])


def test_load_into_names_wrong_shapes():
    sd = Tiny().state_dict()
    sd["proj.weight"] = torch.zeros(4, 5)
    with one_line(ConversionError, "proj.weight (4, 5) vs (4, 3)", "wrong shape"):
        load_into(Tiny(), sd)


def test_load_into_meta_module_takes_the_tensors():
    sd = Tiny().state_dict()
    with torch.device("meta"):
        m = Tiny()
    assert m.proj.weight.is_meta
    load_into(m, sd)
    got = m.state_dict()
    for k, v in sd.items():
        assert not got[k].is_meta
        assert got[k].data_ptr() == v.data_ptr(), k  # assigned, not copied
    assert isinstance(m.proj.weight, torch.nn.Parameter)


def test_check_keys_and_report():
    check_keys(["a", "b"], ["b", "a"])
    with one_line(ConversionError, "missing: a", "unexpected: z"):
        check_keys(["a", "b"], ["b", "z"], what="vae")
    report = key_report([f"k{i}" for i in range(10)], [], limit=3)
    assert report == "missing: k0, k1, k2 (+7 more)"
