"""Real-world splat layouts -> the native layout (SPLAT_KEYS of `model.py`).

Formats that load:
- '3dgs_ply': the .ply of the original 3DGS code (point_cloud/iteration_*/point_cloud.ply), also
  written by gsplat, nerfstudio's splatfacto export and most viewers (see utils/visualization/ply.py);
- '3dgs_ckpt': the original trainer's chkpnt*.pth, a tuple ((active_sh_degree, _xyz, _features_dc,
  _features_rest, _scaling, _rotation, _opacity, max_radii2D, xyz_gradient_accum, denom,
  optimizer state, spatial_lr_scale), iteration);
- 'gsplat_ckpt': gsplat's simple_trainer ckpt_*.pt, {"step", "splats": {means, scales, quats,
  opacities, sh0, shN}};
- 'native': a dict with the native keys (this package's own checkpoints keep them under "splats").
All of them store log scales, opacity logits and wxyz quaternions, so the mapping renames and
reshapes only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from utils.errors import ConversionError, UserError

from .model import SPLAT_KEYS

__all__ = ["detect_layout", "convert_to_native", "from_3dgs_checkpoint", "from_gsplat_checkpoint",
           "check_splats", "load_splats"]

_3DGS_FIELDS = ("active_sh_degree", "_xyz", "_features_dc", "_features_rest", "_scaling", "_rotation", "_opacity")


def detect_layout(obj: Any) -> str:
    """'3dgs_ckpt', 'gsplat_ckpt' or 'native' for a loaded checkpoint object."""
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], (tuple, list)) and len(obj[0]) >= 7:
        return "3dgs_ckpt"
    if isinstance(obj, dict) and isinstance(obj.get("splats"), dict):
        return "gsplat_ckpt"
    if isinstance(obj, dict) and "means" in obj:
        return "native"
    raise ConversionError("unrecognised splat checkpoint: expected a 3DGS chkpnt*.pth tuple, a gsplat ckpt with "
                          "'splats', or a dict with means/scales/quats/opacities/sh0/shN")


def check_splats(sd: dict[str, Tensor], what: str = "splats") -> dict[str, Tensor]:
    """Names and shapes of a native splat dict, or a ConversionError naming what is wrong."""
    missing = [k for k in SPLAT_KEYS if k not in sd]
    unexpected = [k for k in sd if k not in SPLAT_KEYS]
    if missing or unexpected:
        raise ConversionError(f"{what}: missing keys {missing or 'none'}, unexpected keys {unexpected or 'none'}")
    n = sd["means"].shape[0]
    shapes = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3)}
    for k, shape in shapes.items():
        if tuple(sd[k].shape) != shape:
            raise ConversionError(f"{what}: '{k}' has shape {tuple(sd[k].shape)}, expected {shape}")
    if sd["shN"].dim() != 3 or sd["shN"].shape[0] != n or sd["shN"].shape[2] != 3 or \
            sd["shN"].shape[1] + 1 not in (1, 4, 9, 16):
        raise ConversionError(f"{what}: 'shN' has shape {tuple(sd['shN'].shape)}, expected ({n}, K-1, 3) with "
                              "K = 1, 4, 9 or 16")
    return sd


def from_3dgs_checkpoint(obj: Any) -> dict[str, Tensor]:
    """The original trainer's (capture tuple, iteration) -> native splats."""
    capture = obj[0]
    f = dict(zip(_3DGS_FIELDS, capture[:7]))
    n = f["_xyz"].shape[0]
    return check_splats({
        "means": f["_xyz"].float(),
        "scales": f["_scaling"].float(),
        "quats": f["_rotation"].float(),
        "opacities": f["_opacity"].float().reshape(n),
        "sh0": f["_features_dc"].float().reshape(n, 1, 3),
        "shN": f["_features_rest"].float().reshape(n, -1, 3),
    }, "3DGS checkpoint")


def from_gsplat_checkpoint(ckpt: dict) -> dict[str, Tensor]:
    """gsplat simple_trainer {"splats": ...} -> native splats (appearance-model variants are refused)."""
    splats = dict(ckpt["splats"])
    if "sh0" not in splats and ("colors" in splats or "features" in splats):
        raise ConversionError("this gsplat checkpoint was trained with --app_opt (per-image appearance features "
                              "instead of SH colours), which has no plain splat equivalent")
    n = splats["means"].shape[0]
    if "opacities" in splats:
        splats["opacities"] = splats["opacities"].reshape(n)
    return check_splats({k: v.float() for k, v in splats.items()}, "gsplat checkpoint")


def convert_to_native(obj: Any) -> dict[str, Tensor]:
    layout = detect_layout(obj)
    if layout == "3dgs_ckpt":
        return from_3dgs_checkpoint(obj)
    if layout == "gsplat_ckpt":
        return from_gsplat_checkpoint(obj)
    return check_splats({k: v.float() for k, v in obj.items()}, "native splats")


def load_splats(path: str | Path) -> dict[str, Tensor]:
    """Splats from a .ply or any checkpoint layout above, in the native layout."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} not found: give a 3DGS .ply or a checkpoint (.pt/.pth)")
    if path.is_dir():
        found = sorted(path.glob("point_cloud/iteration_*/point_cloud.ply"),
                       key=lambda p: int(p.parent.name.split("_")[-1])) or sorted(path.glob("*.ply"))
        if not found:
            raise UserError(f"{path} holds no .ply: give the splat file itself")
        path = found[-1]
    if path.suffix.lower() == ".ply":
        from utils.visualization.ply import read_splat_ply

        return check_splats(read_splat_ply(path), str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        from utils.weights.files import weights_only_reason

        raise UserError(f"cannot read {path} as a checkpoint ({weights_only_reason(err)}): give a 3DGS .ply, a "
                        "3DGS chkpnt*.pth, a gsplat ckpt_*.pt or a train_3d.py checkpoint") from None
    try:
        return convert_to_native(obj)
    except ConversionError as err:
        raise ConversionError(f"{path}: {err}") from None
