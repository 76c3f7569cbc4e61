"""CycleGAN checkpoints to the native layout.

Formats:
- the original PyTorch release (junyanz/pytorch-CycleGAN-and-pix2pix): one file per network,
  `latest_net_G_A.pth` (A -> B), `latest_net_G_B.pth`, `latest_net_D_A.pth`..., each a plain
  `state_dict` with keys `model.1.weight`, `model.10.conv_block.1.weight`, ... (the native keys).
  Files saved by PyTorch < 0.4 also hold InstanceNorm `running_mean`/`running_var` (and
  `num_batches_tracked`) entries, which the original's loader drops as well: they carry nothing
  with track_running_stats off. The pretrained models (horse2zebra...) are the same layout.
- the training wrapper saved by train_gan.py (`G_A.model...` and `G_B.model...` in one file): pick a
  direction with `direction='AtoB'` (G_A) or `'BtoA'` (G_B).
- a DataParallel `module.` prefix on any of them.
"""
from __future__ import annotations

import re

import torch

from models.gan.cyclegan.config import CycleGANConfig
from utils.errors import ConversionError, UserError

DIRECTIONS = {"AtoB": "G_A.", "BtoA": "G_B."}
_STALE_NORM = re.compile(r"\.(running_mean|running_var|num_batches_tracked)$")


def convert_generator(sd: dict[str, torch.Tensor], direction: str = "AtoB") -> dict[str, torch.Tensor]:
    if direction not in DIRECTIONS:
        raise UserError(f"direction must be AtoB or BtoA, got '{direction}'")
    sd = dict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    prefix = DIRECTIONS[direction]
    if any(k.startswith(("G_A.", "G_B.")) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    # instance norm statistics of old checkpoints: unused (the norm uses each image's own statistics)
    return {k: v for k, v in sd.items() if not _STALE_NORM.search(k)}


def infer_generator_config(sd: dict[str, torch.Tensor], direction: str = "AtoB") -> CycleGANConfig:
    """Widths, channels and number of residual blocks read off a ResNet generator's shapes."""
    g = convert_generator(sd, direction)
    first = g.get("model.1.weight")
    if first is None or first.ndim != 4 or first.shape[-1] != 7:
        raise ConversionError("no CycleGAN ResNet generator (model.1.weight, a 7x7 conv) in this checkpoint: "
                              "pass latest_net_G_A.pth / latest_net_G_B.pth or a native cyclegan file")
    blocks = {int(m.group(1)) for k in g if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    last = max((int(k.split(".")[1]) for k in g if re.match(r"model\.\d+\.weight$", k)))
    use_dropout = any(k.endswith("conv_block.6.weight") for k in g)
    return CycleGANConfig(in_channels=int(first.shape[1]), ngf=int(first.shape[0]), n_blocks=len(blocks),
                          out_channels=int(g[f"model.{last}.weight"].shape[0]), ndf=int(first.shape[0]),
                          use_dropout=use_dropout)
