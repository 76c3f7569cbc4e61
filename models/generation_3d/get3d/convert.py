"""nv-tlabs' GET3D checkpoints -> this project's modules and native safetensors.

The released files (huggingface.co/JunGaoNVIDIA/get3d-ckpt: shapenet_car.pt, shapenet_chair.pt,
shapenet_motorbike.pt, ...) are `torch.save({'G': ..., 'G_ema': ..., 'D': ...})` of plain state dicts,
so they load with torch.load(weights_only=True) (utils/weights/files.py); their keys are nv-tlabs'
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


def load_official(path: str | Path, network: str = "G_ema") -> dict[str, torch.Tensor]:
    """One network's state dict from an official GET3D checkpoint (G_ema, the averaged generator, by default)."""
    if network not in NETWORKS:
        raise WeightsError(f"a GET3D checkpoint holds {', '.join(NETWORKS)}, not {network!r}: pick one of them")
    flat = load_state_dict(path, unwrap=False)
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
