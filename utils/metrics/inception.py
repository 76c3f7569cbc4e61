"""The TensorFlow InceptionV3 (graph of 2015-12-05) that FID, KID and the Inception Score are defined on.

This is the network of the original FID code (TTUR) and of the Inception Score, as ported to
PyTorch by pytorch-fid (`pt_inception-2015-12-05-6726825d.pth`) and torch-fidelity
(`weights-inception-2015-12-05-6726825d.pth`, same tensors). It differs from torchvision's
InceptionV3 in three places, all reproduced here:

- the average pools inside the A, C and first E blocks exclude the zero padding from the mean
  (TensorFlow's behaviour);
- the pool branch of the last E block (Mixed_7c) is a max pool, not an average pool;
- the classifier has 1008 outputs (1000 ImageNet classes and 8 unused ones).

Module names follow torchvision (`Mixed_5b.branch1x1.conv.weight`...), which is the layout of both
weight files, so loading is a key check rather than a renaming.

Input: float images in [0, 1], (B, 3, H, W). They are resized to 299 x 299 (see `resize_299`) and
scaled to [-1, 1]. Outputs: the 2048-d pool features (FID, KID) and the 1008 logits (IS).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import UserError, WeightsError

__all__ = ["FIDInceptionV3", "load_inception", "convert_inception_state_dict", "find_inception_weights",
           "resize_299", "WEIGHTS_FILES", "WEIGHTS_URL"]

WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
# File names under which the two reference tools cache the same tensors.
WEIGHTS_FILES = ("pt_inception-2015-12-05-6726825d.pth", "weights-inception-2015-12-05-6726825d.pth")
RESIZE_MODES = ("pytorch-fid", "tf", "none")
DIMS = (64, 192, 768, 2048)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, as in the TF graph) -> ReLU.

    `fuse()` folds the (frozen) batch norm into the convolution for faster inference.
    """

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return F.relu(self.fused(x))
        return F.relu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        fused.requires_grad_(False)
        # Kept outside the module tree (a plain attribute) so the state dict stays the official one.
        object.__setattr__(self, "fused", fused)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.fused is not None:
            object.__setattr__(self, "fused", self.fused._apply(fn))
        return self


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow averages only over the pixels inside the image at the borders.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """Factorised 7x7 convolutions (1x7 then 7x1) on the 17 x 17 grid."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Expanded filter bank on the 8 x 8 grid; `pool` is 'avg' (Mixed_7b) or 'max' (Mixed_7c: the
    exported TF graph has a max pool there, and the FID weights expect it)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.pool == "max" else _tf_avg_pool(x)
        d = self.branch_pool(pooled)
        return torch.cat([a, b, c, d], 1)


def _tf_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize as TensorFlow 1.x `resize_bilinear(align_corners=False)`: the source coordinate of
    output pixel i is i * (in / out), with no half-pixel offset (unlike torch's align_corners=False)."""
    for dim in (2, 3):
        n_in = x.shape[dim]
        if n_in == size:
            continue
        # float32 positions, as TensorFlow computes them
        src = torch.arange(size, device=x.device, dtype=torch.float32) * torch.tensor(n_in / size, dtype=torch.float32)
        i0 = src.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        w = (src - i0).to(x.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = size
        w = w.view(shape)
        x = x.index_select(dim, i0) * (1 - w) + x.index_select(dim, i1) * w
    return x


MIN_SIDE = 75
"""The smallest image side InceptionV3 takes without a resize (its stride-2 stem and pools)."""


def too_small_message(size: tuple[int, int], where: str = "") -> str:
    return (f"{where or 'an image'} is {size[0]}x{size[1]}, smaller than the {MIN_SIDE}x{MIN_SIDE} that Inception "
            "takes with --resize none: use --resize pytorch-fid or tf (the 299x299 resize every published score uses)")


def check_min_side(files, resize: str) -> None:
    """With `resize` 'none', refuse (from the headers, before the network loads) an image file too small."""
    if resize != "none":
        return
    from PIL import Image

    for f in files:
        with Image.open(f) as im:
            if min(im.size) < MIN_SIDE:
                raise UserError(too_small_message((im.height, im.width), str(f)))


def resize_299(x: torch.Tensor, mode: str = "pytorch-fid") -> torch.Tensor:
    """Resize float images to 299 x 299.

    - 'pytorch-fid': `F.interpolate(bilinear, align_corners=False)`, no antialiasing, as pytorch-fid
      (and clean-fid's `legacy_pytorch` mode);
    - 'tf': TensorFlow 1.x bilinear, as torch-fidelity and the original TF FID / IS code (the network
      then also scales 8-bit values v as (v - 128) / 128, as the TF graph does);
    - 'none': no resize (the images must already be 299 x 299).
    """
    if mode == "pytorch-fid":
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    if mode == "tf":
        return _tf_bilinear(x, 299)
    if mode == "none":
        return x
    raise UserError(f"unknown resize mode '{mode}': use one of {', '.join(RESIZE_MODES)}")


class FIDInceptionV3(nn.Module):
    """The FID/IS InceptionV3. `forward(x)` takes (B, 3, H, W) floats in [0, 1] and returns the 2048-d
    pool features; `logits(x)` gives the 1008 logits (without the classifier bias by default, as IS)."""

    def __init__(self, resize: str = "pytorch-fid"):
        super().__init__()
        if resize not in RESIZE_MODES:
            raise UserError(f"unknown resize mode '{resize}': use one of {', '.join(RESIZE_MODES)}")
        self.resize = resize
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(2048, 1008)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise UserError(f"Inception expects (B, 3, H, W) images, got shape {tuple(x.shape)}")
        if x.shape[1] == 1:  # grey images are fed as RGB with equal channels, as PIL's convert('RGB')
            x = x.expand(-1, 3, -1, -1)
        if self.resize == "none" and min(x.shape[-2:]) < MIN_SIDE:
            raise UserError(too_small_message(tuple(x.shape[-2:])))
        x = resize_299(x.to(self.fc.weight.dtype), self.resize)
        if self.resize == "tf":
            # The TF graph maps 8-bit values v to (v - 128) / 128 (torch-fidelity keeps this);
            # pytorch-fid maps v / 255 to [-1, 1], i.e. (v - 127.5) / 127.5.
            return (x * 255 - 128) / 128
        return 2 * x - 1

    def pool_features(self, x: torch.Tensor, dims: int = 2048) -> torch.Tensor:
        """(B, dims) spatially averaged features for images in [0, 1].

        `dims` picks the layer as pytorch-fid's `--dims` does: 64 (first max pool), 192 (second max
        pool), 768 (input of the auxiliary classifier), 2048 (final average pool, the FID standard).
        """
        if dims not in DIMS:
            raise UserError(f"unknown feature size {dims}: use one of {', '.join(map(str, DIMS))}")
        x = self.preprocess(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        if dims == 64:
            return x.mean((2, 3))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        if dims == 192:
            return x.mean((2, 3))
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        if dims == 768:
            return x.mean((2, 3))
        for block in (self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))

    forward = pool_features

    def logits(self, x: torch.Tensor, bias: bool = False, features: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1008) class logits. The Inception Score of Salimans et al. multiplies the pool features by
        the classifier matrix without adding its bias ('logits_unbiased' in torch-fidelity)."""
        f = self.pool_features(x) if features is None else features
        out = f @ self.fc.weight.T
        return out + self.fc.bias if bias else out

    def fuse(self) -> "FIDInceptionV3":
        """Fold every batch norm into its convolution (inference only; results agree to float rounding)."""
        for m in self.modules():
            if isinstance(m, BasicConv2d):
                m.fuse()
        return self


def convert_inception_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any known layout of the TF-Inception weights -> ours.

    - the pytorch-fid / torch-fidelity weight files: already our names (BatchNorm's
      `num_batches_tracked` counters, absent from older files, are dropped);
    - the state dict of a `pytorch_fid.inception.InceptionV3` module (`blocks.{b}.{i}...`), which
      has no classifier.
    """
    block_names = {
        0: ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"],
        1: ["Conv2d_3b_1x1", "Conv2d_4a_3x3"],
        2: ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"],
        3: ["Mixed_7a", "Mixed_7b", "Mixed_7c"],
    }
    out = {}
    for key, value in sd.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.startswith("blocks."):
            _, b, i, rest = key.split(".", 3)
            try:
                key = f"{block_names[int(b)][int(i)]}.{rest}"
            except (KeyError, IndexError):
                raise WeightsError(f"unexpected key '{key}' in a pytorch-fid InceptionV3 state dict") from None
        out[key] = value
    return out


def find_inception_weights() -> Path | None:
    """The weights file in the torch hub cache (where pytorch-fid and torch-fidelity put it), or None."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return next((folder / f for f in WEIGHTS_FILES if (folder / f).exists()), None)


def load_inception(weights: str | os.PathLike | None = None, device: str | torch.device | None = "cpu",
                   resize: str = "pytorch-fid", download: bool | None = None, fuse: bool = True,
                   need_logits: bool = False) -> FIDInceptionV3:
    """Build the network and load `weights` (a path), or the cached file, or download it when allowed
    (`download=None`: the zoo's offline rule, `utils.weights.is_offline`). `fuse` folds batch norms for speed."""
    from utils.weights import check_keys, load_state_dict

    if weights is None:
        path = find_inception_weights()
        if path is None:
            from utils.weights.hub import fetch_url

            path = fetch_url(WEIGHTS_URL, Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILES[0],
                             f"the FID Inception weights file {WEIGHTS_FILES[0]}", download, instead="or pass --weights PATH")
    else:
        path = Path(weights)
        if not path.exists():
            raise WeightsError(f"Inception weights not found: {path}: pass the path of {WEIGHTS_FILES[0]} "
                               f"(from {WEIGHTS_URL})")
    sd = convert_inception_state_dict(load_state_dict(path))
    model = FIDInceptionV3(resize=resize)
    expected = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    if not need_logits and "fc.weight" not in sd:
        expected -= {"fc.weight", "fc.bias"}
    check_keys(expected, sd.keys(), what=f"Inception checkpoint {path.name}")
    model.load_state_dict(sd, strict=False)
    if device is not None:
        model = model.to(device)
    return model.fuse() if fuse else model
