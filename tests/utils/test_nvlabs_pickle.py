"""NVlabs persistence pickles are read as data: the embedded source never runs (utils/weights/nvlabs.py).

The pickles are written in the byte format of `torch_utils.persistence` (tests/fixtures/stylegan3/
nvlabs_pickle.py): a `_reconstruct_persistent_obj(meta)` call per network whose meta carries the module
source, kwargs as `dnnlib.util.EasyDict`. A source that would create a file, or import os and run a
command, is kept as inert text: loading creates nothing, and a file that is not a network is refused
in one line.
"""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from tests.fixtures.stylegan3.nvlabs_pickle import Persistent, as_persistent, dump_snapshot
from utils.errors import WeightsError
from utils.weights import PickledObject
from utils.weights.nvlabs import PersistentModule, load_nvlabs_pickle, nvlabs_network


def evil_source(marker) -> str:
    return ("import os\n"
            f"open({str(marker)!r}, 'w').write('the pickled source ran')\n"
            f"os.system('touch {marker}.cmd')\n"
            "class Generator:\n    pass\n")


def small_network() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.fc = torch.nn.Linear(3, 2)
    net.register_buffer("w_avg", torch.arange(2.0))
    net.register_buffer("scratch", torch.ones(1), persistent=False)
    return net


def test_a_snapshot_loads_as_records_and_its_source_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    net = small_network()
    path = dump_snapshot(tmp_path / "network-snapshot.pkl",
                         {"G_ema": as_persistent(net, evil_source(marker), {"z_dim": 3, "mapping_kwargs": {"a": 1}})},
                         {"training_set_kwargs": {"xflip": True}})
    data = load_nvlabs_pickle(path)
    assert not marker.exists() and not (tmp_path / "pwned.cmd").exists()
    key, G = nvlabs_network(data, path)
    assert key == "G_ema" and isinstance(G, PersistentModule) and G.class_name == "Module"
    assert G.init_kwargs == {"z_dim": 3, "mapping_kwargs": {"a": 1}}
    assert type(G.init_kwargs["mapping_kwargs"]) is dict  # EasyDict became a plain dict
    assert data["training_set_kwargs"] == {"xflip": True}
    assert "os.system" in G.module_src and len(G.source_digest) == 64  # kept as text
    sd = G.state_dict()
    assert sorted(sd) == ["fc.bias", "fc.weight", "w_avg"]  # the non-persistent buffer is left out
    assert torch.equal(sd["fc.weight"], net.fc.weight.detach()) and torch.equal(sd["w_avg"], net.w_avg)


def test_pickle_load_would_run_that_source(tmp_path):
    """The same bytes through plain pickle with a persistence-like loader run the code: what is avoided above."""
    import sys
    import types

    marker = tmp_path / "ran"
    path = dump_snapshot(tmp_path / "net.pkl", {"G_ema": as_persistent(small_network(), evil_source(marker))})
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # what the release does: exec the source
        exec(meta["module_src"], {})
        return meta["class_name"]

    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = dict
    saved = {k: sys.modules.get(k) for k in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")}
    sys.modules.update({"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
                        "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util})
    try:
        with open(path, "rb") as f:
            pickle.load(f)
    finally:
        for k, v in saved.items():
            sys.modules.pop(k) if v is None else sys.modules.__setitem__(k, v)
    assert marker.exists()


class Boom:
    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_a_pickle_calling_os_system_yields_an_inert_record_and_is_refused(tmp_path):
    marker = tmp_path / "system"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Boom(f"touch {marker}")}))
    data = load_nvlabs_pickle(path)
    assert not marker.exists()
    assert isinstance(data["G_ema"], PickledObject) and data["G_ema"].cls.endswith("system")
    with pytest.raises(WeightsError, match="holds no NVlabs generator"):
        nvlabs_network(data, path)


def test_a_malformed_persistence_call_stays_a_record(tmp_path):
    path = dump_snapshot(tmp_path / "odd.pkl", {"G_ema": Persistent("not a meta dict")})
    data = load_nvlabs_pickle(path)
    assert isinstance(data["G_ema"], PickledObject)
    with pytest.raises(WeightsError, match="holds no NVlabs generator"):
        nvlabs_network(data, path)


def test_refusals_are_one_line(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(WeightsError, match="not an NVlabs network pickle"):
        nvlabs_network(load_nvlabs_pickle(tmp_path / "list.pkl"), tmp_path / "list.pkl")
    cut = dump_snapshot(tmp_path / "full.pkl", {"G_ema": as_persistent(small_network(), "")}).read_bytes()
    (tmp_path / "cut.pkl").write_bytes(cut[: len(cut) // 2])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_nvlabs_pickle(tmp_path / "cut.pkl")
    with pytest.raises(WeightsError, match="not found"):
        load_nvlabs_pickle(tmp_path / "missing.pkl")


class Network:
    """Stands for dnnlib.tflib.network.Network: a TensorFlow-era snapshot is a tuple of three of them."""

    def __init__(self):
        self.name = "G"


def test_a_tensorflow_era_pickle_is_named(tmp_path):
    path = tmp_path / "tf.pkl"
    path.write_bytes(pickle.dumps((Network(), Network(), Network())))
    with pytest.raises(WeightsError, match="TensorFlow-era"):
        nvlabs_network(load_nvlabs_pickle(path), path)


def test_a_stylegan_pipeline_refuses_an_unknown_network_in_one_line(tmp_path):
    from models.gan.stylegan3.pipeline import StyleGANPipeline

    marker = tmp_path / "pwned"
    net = torch.nn.Module()
    net.synthesis = torch.nn.Module()
    path = dump_snapshot(tmp_path / "weird.pkl", {"G_ema": as_persistent(net, evil_source(marker), {"z_dim": 1})})
    with pytest.raises(WeightsError, match="neither a StyleGAN3"):
        StyleGANPipeline.from_pretrained(path, device="cpu")
    assert not marker.exists()
