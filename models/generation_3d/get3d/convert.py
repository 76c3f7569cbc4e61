"""nv-tlabs' GET3D checkpoints -> this project's modules and native safetensors.

The released files (huggingface.co/JunGaoNVIDIA/get3d-ckpt: shapenet_car.pt, shapenet_chair.pt,
shapenet_motorbike.pt, ...) are `torch.save({'G': ..., 'G_ema': ..., 'D': ...})` of plain state dicts,
so they load with torch.load(weights_only=True) (utils/weights/files.py); a file that also pickles other
objects goes through the restricted unpickler instead, and a network-snapshot .pkl (torch_utils.persistence
pickles with their module source and dnnlib EasyDicts) through utils/weights/nvlabs.py; no code from a file
ever runs. Their keys are nv-tlabs'
module names, which GET3DGenerator and GET3DDiscriminator keep, so no key is renamed. `convert`
checks that the chosen network loads strictly into the configured module and writes it as native
safetensors with the config in the metadata.
"""
from __future__ import annotations

from pathlib import Path

import torch

from models.generation_3d.get3d.config import GET3DConfig
from models.generation_3d.get3d.model import GET3DGenerator
from utils.errors import WeightsError
from utils.rendering.dmtet import regular_tet_grid
from utils.weights.files import load_state_dict
from utils.weights.native import save_native

__all__ = ["NETWORKS", "convert", "load_official"]

NETWORKS = ("G", "G_ema", "D")
"""The state dicts an official checkpoint holds."""


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The flat tensors of a .pt: torch.load(weights_only=True) first; a file that pickles other objects
    (dnnlib EasyDicts of options, say) is read by the restricted unpickler, which rebuilds tensors and plain
    containers and turns every other object into an inert record, so no code from the file runs."""
    import zipfile

    if path.suffix.lower() in (".pkl", ".pickle"):
        return _read_snapshot(path)
    try:
        return load_state_dict(path, unwrap=False)
    except WeightsError as err:
        if "safe load refuses" not in str(err) or not zipfile.is_zipfile(path):
            raise
    from utils.weights.files import flatten_tensors
    from utils.weights.pickles import load_torch_zip_restricted

    return flatten_tensors(load_torch_zip_restricted(path))


def _read_snapshot(path: Path) -> dict[str, torch.Tensor]:
    """The networks of a network-snapshot .pkl (torch_utils.persistence, like StyleGAN's) as flat tensors,
    read by utils/weights/nvlabs.py: the embedded module source is kept as text and never run."""
    from utils.weights.nvlabs import PersistentModule, load_nvlabs_pickle

    obj = load_nvlabs_pickle(path)
    if not isinstance(obj, dict):
        raise WeightsError(f"{path.name} is not a GET3D network snapshot (it holds a {type(obj).__name__}): pass "
                           "a released .pt or a network-snapshot .pkl of nv-tlabs' train_3d.py")
    return {f"{name}.{k}": v for name, net in obj.items() if isinstance(net, PersistentModule)
            for k, v in net.state_dict().items()}


def load_official(path: str | Path, network: str = "G_ema") -> dict[str, torch.Tensor]:
    """One network's state dict from an official GET3D checkpoint (G_ema, the averaged generator, by default)."""
    if network not in NETWORKS:
        raise WeightsError(f"a GET3D checkpoint holds {', '.join(NETWORKS)}, not {network!r}: pick one of them")
    flat = _read_checkpoint(Path(path))
    sd = {k[len(network) + 1:]: v for k, v in flat.items() if k.startswith(network + ".")}
    if not sd:
        found = sorted({k.split(".", 1)[0] for k in flat})
        raise WeightsError(f"{Path(path).name} has no {network!r} network (it holds {', '.join(found)}): it is not "
                           "an nv-tlabs GET3D checkpoint; pass one of the released .pt files")
    return sd


def convert(path: str | Path, out: str | Path, cfg: GET3DConfig) -> Path:
    """Write the checkpoint's G_ema as native safetensors after a strict load into GET3DGenerator(cfg)."""
    sd = load_official(path, "G_ema")
    grid = regular_tet_grid(1)  # the grid holds no parameters (and is built off the meta device)
    with torch.device("meta"):
        G = GET3DGenerator(cfg, grid=grid)
    expected = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if expected != got:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise WeightsError(f"{Path(path).name} does not fit this GET3D configuration (missing {missing[:3]}, "
                           f"unexpected {extra[:3]}, other shapes {wrong[:3]}): pick the preset it was trained with")
    return save_native(out, sd, cfg)
