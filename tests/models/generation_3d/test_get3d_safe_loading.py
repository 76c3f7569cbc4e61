"""GET3D checkpoints that pickle more than tensors load as data: a .pt with an object whose unpickling would
run a shell command, and a network-snapshot .pkl (torch_utils.persistence, embedded source, EasyDicts) give
the generator's tensors, the embedded code never runs, and the pipeline draws from them."""
from __future__ import annotations

import os

import torch

from models.generation_3d.get3d.config import TINY
from models.generation_3d.get3d.convert import load_official
from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.pipeline import GET3DPipeline
from tests.fixtures.stylegan3.nvlabs_pickle import as_persistent, dump_snapshot


class _Trap:
    """Unpickling this with pickle.load would create the file `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _generator() -> GET3DGenerator:
    torch.manual_seed(0)
    return GET3DGenerator(TINY)


def test_pt_with_a_code_object_loads_tensors_without_running_it(tmp_path):
    G, trap = _generator(), tmp_path / "ran"
    ckpt = tmp_path / "snapshot.pt"
    torch.save({"G_ema": G.state_dict(), "options": _Trap(trap)}, ckpt)
    sd = load_official(ckpt)
    assert not trap.exists()
    assert set(sd) == set(G.state_dict()) and all(torch.equal(sd[k], v) for k, v in G.state_dict().items())


def test_network_snapshot_pkl_loads_without_running_its_source(tmp_path):
    G, trap = _generator(), tmp_path / "ran"
    src = f"open({str(trap)!r}, 'w').write('the embedded source ran')"
    pkl = dump_snapshot(tmp_path / "network-snapshot-000100.pkl",
                        {"G_ema": as_persistent(G, src, {"z_dim": TINY.z_dim}), "G": as_persistent(G, src)},
                        extra={"training_set_kwargs": {"path": "data", "resolution": 32}})
    sd = load_official(pkl)
    assert not trap.exists()
    assert set(sd) == set(G.state_dict()) and all(torch.equal(sd[k], v) for k, v in G.state_dict().items())
    pipe = GET3DPipeline.from_pretrained(str(pkl), preset="tiny")
    z = torch.randn(1, TINY.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        (v1, _), = G.generate_meshes(z, z)[0]
        (v2, _), = pipe.generator.generate_meshes(z, z)[0]
    assert torch.equal(v1, v2) and not trap.exists()
