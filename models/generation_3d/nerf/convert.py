"""Reading radiance-field checkpoints: format detection, preset checks, the model they hold.

The zoo's trainer writes the only layout (`CHECKPOINT_FORMAT`, a torch file read with
`weights_only=True`): preset, method, the full model config, the scene normalisation and the
weights. NeRF methods publish no common weights format of their own, so nothing else converts;
a file that is not such a checkpoint, or that holds another preset than asked for, is refused in
one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from utils.errors import UserError
from utils.rendering.cameras import Cameras

from .config import NeRFConfig
from .model import NeRFModel
from .training import CHECKPOINT_FORMAT, SceneNormalization

__all__ = ["check_checkpoint", "config_from_checkpoint", "load_model", "resolve_checkpoint"]

_FIELDS = set(NeRFConfig.__dataclass_fields__)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest one of a training folder (its ckpts/ or the folder itself)."""
    from utils.training import latest_checkpoint

    p = Path(path)
    if p.is_dir():
        found = latest_checkpoint(p / "ckpts") or latest_checkpoint(p)
        if found is None:
            raise UserError(f"{p} holds no checkpoint (ckpts/step_*.pt): pass a checkpoint file or a train_3d.py "
                            "--out folder")
        return found
    if not p.is_file():
        raise UserError(f"checkpoint {p} not found: pass a ckpts/step_*.pt file of train_3d.py --model nerf")
    return p


def check_checkpoint(path: str | Path, preset: str | None = None) -> dict[str, Any]:
    """The checkpoint at `path` (a file or a training folder), checked to be a NeRF checkpoint of `preset`."""
    from utils.training import load_checkpoint

    p = resolve_checkpoint(path)
    ckpt = load_checkpoint(p)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{p} is not a NeRF checkpoint of this zoo (no '{CHECKPOINT_FORMAT}' format entry): pass a "
                        "ckpts/step_*.pt written by train_3d.py --model nerf")
    missing = [k for k in ("preset", "model_config", "model", "normalization") if k not in ckpt]
    if missing:
        raise UserError(f"{p} is an incomplete NeRF checkpoint (missing {', '.join(missing)}): it was cut short; use "
                        "an earlier checkpoint")
    if preset is not None and ckpt["preset"] != preset:
        raise UserError(f"{p} holds a '{ckpt['preset']}' model, not '{preset}': pass --preset {ckpt['preset']}")
    return ckpt


def config_from_checkpoint(ckpt: dict[str, Any]) -> NeRFConfig:
    raw = ckpt["model_config"]
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise UserError(f"the checkpoint's model config has unknown fields {', '.join(unknown[:5])}: it was written "
                        "by a newer version of this zoo")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return NeRFConfig(**values)


def load_model(path: str | Path, preset: str | None = None, device: torch.device | str = "cpu"
               ) -> tuple[NeRFModel, str, SceneNormalization, Cameras | None]:
    """(model in eval mode, its preset, the scene normalisation, the training cameras in model
    space) of a checkpoint."""
    ckpt = check_checkpoint(path, preset)
    config = config_from_checkpoint(ckpt)
    model = NeRFModel(config, num_images=int(ckpt.get("num_images", 0)))
    state = ckpt["model"]
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise UserError(f"{resolve_checkpoint(path)} does not fit its own config: missing {missing[:4]}, unexpected "
                        f"{unexpected[:4]}")
    from utils.weights.keys import check_finite

    check_finite(state, "NeRF checkpoint")  # NaN/Inf refused, naming the tensor
    model.load_state_dict(state)
    norm = ckpt["normalization"]
    cams = None
    if "train_cameras" in ckpt:
        tc = ckpt["train_cameras"]
        cams = Cameras(torch.linalg.inv(model.train_camtoworlds.detach().cpu()), tc["Ks"].float(), int(tc["width"]),
                       int(tc["height"]))
    return (model.to(device).eval(), ckpt["preset"], SceneNormalization(tuple(norm["center"]), float(norm["scale"])),
            cams)
