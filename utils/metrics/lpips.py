"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric").

The distance between two images is the sum, over five layers of an ImageNet backbone, of the
spatial mean of a learned per-channel weighting of the squared difference of unit-normalised
activations. This is version 0.1 of the metric, the one the `lpips` package computes by default.

Weights come from two places:

- the five linear heads: the calibrated `weights/v0.1/{alex,vgg}.pth` files that the `lpips`
  package ships inside its wheel (nothing is downloaded), or a path to such a file;
- the backbone: torchvision's ImageNet AlexNet / VGG16 checkpoint, from a path or the torch hub
  cache (`$TORCH_HOME/hub/checkpoints`), where torchvision puts it.

Inputs are in [-1, 1]; `forward(x, y)` returns one distance per image, shape (B,).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn as nn

from utils.errors import UserError, WeightsError

__all__ = ["LPIPS", "BACKBONES", "backbone_cache_path", "convert_lpips_state_dict", "shipped_heads_path"]


class _Backbone:
    """What LPIPS needs of one torchvision feature stack."""

    def __init__(self, builder: str, taps: tuple[int, ...], channels: tuple[int, ...], file: str, url: str):
        self.builder, self.taps, self.channels, self.file, self.url = builder, taps, channels, file, url


# `taps` are the indices in torchvision's `features` Sequential after which an activation is read
# (the ReLU closing each stage); these are the layers of the LPIPS paper.
BACKBONES = {
    "alex": _Backbone("alexnet", (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), "alexnet-owt-7be5be79.pth",
                      "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": _Backbone("vgg16", (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), "vgg16-397923af.pth",
                     "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
_ALIASES = {"alexnet": "alex", "vgg16": "vgg"}


def _net_name(net: str) -> str:
    name = _ALIASES.get(net, net)
    if name not in BACKBONES:
        raise UserError(f"LPIPS: unknown backbone '{net}': use 'alex' or 'vgg'")
    return name


def shipped_heads_path(net: str) -> Path | None:
    """The calibrated heads shipped inside the installed `lpips` package, or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{_net_name(net)}.pth"
    return path if path.exists() else None


def backbone_cache_path(net: str) -> Path:
    """Where torchvision keeps the ImageNet checkpoint of `net` (it may not exist yet)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[_net_name(net)].file


def convert_lpips_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `lpips` package's layout (heads file or a whole `lpips.LPIPS` state dict) -> ours.

    Heads: `lin{k}.model.1.weight` (index 1 because of a dropout before the conv; a whole model
    also lists them as `lins.{k}...`) -> `heads.{k}.weight`.
    Backbone: `net.slice{s}.{i}.weight` keep torchvision's index `i` -> `features.{i}.weight`.
    The scaling buffers are constants and dropped.
    """
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0].startswith("lin") and parts[0][3:].isdigit() and parts[-1] == "weight":
            out[f"heads.{int(parts[0][3:])}.weight"] = value
        elif parts[0] == "lins" and parts[-1] == "weight":  # the same tensors again, via a ModuleList
            out[f"heads.{int(parts[1])}.weight"] = value
        elif parts[0] == "net" and len(parts) == 4 and parts[1].startswith("slice"):
            out[f"features.{parts[2]}.{parts[3]}"] = value
        elif parts[0] == "scaling_layer":
            continue
        else:
            raise WeightsError(f"unexpected key '{key}' in an LPIPS checkpoint: this is not an lpips weights file")
    return out


def _features_only(sd: dict[str, torch.Tensor], name: str = "the backbone checkpoint") -> dict[str, torch.Tensor]:
    """Keep `features.*` of a torchvision classifier checkpoint (the classifier head is unused)."""
    feats = {k: v for k, v in sd.items() if k.startswith("features.")}
    if not feats:
        raise WeightsError(f"{name} has no 'features.*' tensors: pass torchvision's ImageNet "
                           "AlexNet or VGG16 weights")
    return feats


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. `LPIPS(net)` has random backbone weights unless `backbone_weights` is given;
    `LPIPS.from_pretrained(net)` is the usable metric.

    `heads`: True loads the calibrated heads shipped with the `lpips` package, a path loads that
    file, False uses no heads (the 'baseline' variant: channel sums with equal weights).
    """

    def __init__(self, net: str = "alex", heads: bool | str | os.PathLike = True,
                 backbone_weights: str | os.PathLike | None = None):
        super().__init__()
        import torchvision

        self.net = _net_name(net)
        spec = BACKBONES[self.net]
        # Constants that move [-1, 1] inputs to ImageNet statistics (as in the paper's code).
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        # Built on the meta device: the classifier (120M parameters for VGG16) is never allocated or
        # initialised, only the feature layers up to the last tap (the state dict holds just those).
        with torch.device("meta"):
            features = getattr(torchvision.models, spec.builder)(weights=None).features
        self.features = nn.Sequential(*list(features.children())[: spec.taps[-1] + 1]).to_empty(device="cpu")
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                m.reset_parameters()  # random until weights are loaded
        for m in self.features:
            if isinstance(m, nn.ReLU):
                m.inplace = False  # the tapped activations must not be overwritten later
        self.taps = spec.taps
        self.use_heads = heads is not False
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in spec.channels) if self.use_heads else None
        if self.use_heads:
            path = shipped_heads_path(self.net) if heads is True else Path(heads)
            if path is None:
                raise WeightsError("LPIPS heads: the `lpips` package is not installed, so its calibrated heads "
                                   "are not available: `pip install lpips`, or pass heads=<path to v0.1 "
                                   f"{self.net}.pth>")
            self.load_heads(path)
        if backbone_weights is not None:
            self.load_backbone(backbone_weights)
        self.requires_grad_(False)
        self.eval()

    # -- weights -----------------------------------------------------------------------------------

    def load_heads(self, path: str | os.PathLike) -> None:
        from utils.weights import load_into, load_state_dict

        sd = convert_lpips_state_dict(load_state_dict(path, unwrap=False))
        load_into(self.heads, {k.removeprefix("heads."): v for k, v in sd.items()}, what=f"LPIPS {self.net} heads")

    def load_backbone(self, path: str | os.PathLike) -> None:
        from utils.weights import load_into, load_state_dict

        sd = _features_only(load_state_dict(path, unwrap=True), f"the backbone checkpoint {Path(path).name}")
        keep = {k.removeprefix("features."): v for k, v in sd.items()
                if int(k.split(".")[1]) <= self.taps[-1]}
        load_into(self.features, keep, what=f"LPIPS {self.net} backbone ({Path(path).name})")

    @classmethod
    def from_pretrained(cls, net: str = "alex", backbone_weights: str | os.PathLike | None = None,
                        heads: bool | str | os.PathLike = True, device: str | torch.device | None = None,
                        download: bool | None = None) -> "LPIPS":
        """The calibrated metric: ImageNet backbone from `backbone_weights` or the torch hub cache.

        Without a cached backbone, it is downloaded from download.pytorch.org when `download` is
        True (default: unless HF_HUB_OFFLINE is set); offline it fails with a line saying where
        to put the file.
        """
        name = _net_name(net)
        if backbone_weights is None:
            backbone_weights = ensure_backbone(name, download)
        elif not Path(backbone_weights).exists():
            raise WeightsError(f"LPIPS backbone weights not found: {backbone_weights}: pass torchvision's "
                               f"ImageNet {BACKBONES[name].builder} checkpoint ({BACKBONES[name].url})")
        model = cls(name, heads=heads, backbone_weights=backbone_weights)
        return model.to(device) if device is not None else model

    # -- metric ------------------------------------------------------------------------------------

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer distance maps (B, 1, h_l, w_l) before the spatial mean."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise UserError(f"LPIPS expects two (B, 3, H, W) batches of the same shape, got {tuple(x.shape)} "
                            f"and {tuple(y.shape)}")
        n = x.shape[0]
        h = (torch.cat([x, y]) - self.shift) / self.scale  # one pass through the backbone for both
        maps = []
        k = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i == self.taps[k]:
                # Unit-normalise along channels (the 1e-10 guards all-zero activations).
                f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                d = (f[:n] - f[n:]).pow(2)
                maps.append(self.heads[k](d) if self.use_heads else d.sum(1, keepdim=True))
                k += 1
        return maps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of each pair of images in [-1, 1], shape (B,)."""
        return sum(m.mean((2, 3)) for m in self.layer_distances(x, y))[:, 0]


def ensure_backbone(net: str, download: bool | None = None) -> Path:
    """The cached ImageNet backbone checkpoint, downloaded when allowed (`download=None`: the zoo's
    offline rule, `utils.weights.is_offline`)."""
    from utils.weights.hub import fetch_url

    spec = BACKBONES[_net_name(net)]
    return fetch_url(spec.url, backbone_cache_path(net), f"LPIPS-{_net_name(net)} backbone {spec.file} "
                     f"(torchvision's ImageNet {spec.builder})", download, instead="or pass backbone_weights=<path>")
