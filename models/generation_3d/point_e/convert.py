"""Point-E's released checkpoints (openai/point-e: base40M-textvec.pt, base_40m.pt, ..., upsample_40m.pt, sdf.pt)
to this package's modules.

The modules keep the release's attribute names (`backbone.resblocks.N.attn.c_qkv`, `input_proj`, `output_proj`,
...), so a release file loads with no renaming. What differs: the text/image-conditioned checkpoints may carry
the tensors of their frozen CLIP wrapper under `clip.*`; the CLIP model is loaded on its own (transformers'
openai/clip-vit-large-patch14), so those keys are dropped here.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch


def from_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A release checkpoint's tensors, without its CLIP wrapper's keys, ready for `load_into`."""
    return {k: v for k, v in state_dict.items() if not k.startswith("clip.")}


__all__ = ["from_official"]
