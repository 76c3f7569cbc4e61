"""Super-resolution checkpoints to the native layout, and configs read off their shapes.

RRDBNet (ESRGAN family); the native layout is Real-ESRGAN's (BasicSR's `RRDBNet`):
`conv_first`, `body.{i}.rdb{1,2,3}.conv{1..5}`, `conv_body`, `conv_up{1,2}`, `conv_hr`, `conv_last`.
Layouts read:
- Real-ESRGAN / BasicSR releases (RealESRGAN_x4plus.pth, RealESRGAN_x4plus_anime_6B.pth, RealESRGAN_x2plus.pth):
  the native names, under a `params_ema` (preferred) or `params` wrapper. x2 / x1 models pixel-unshuffle
  their input (conv_first takes 12 / 48 channels);
- ESRGAN's own release after its 2019 rename (RRDB_ESRGAN_x4.pth, RRDB_PSNR_x4.pth), also BSRGAN / RealSR:
  `RRDB_trunk.{i}.RDB{j}.conv{k}`, `trunk_conv`, `upconv{n}`, `HRconv`;
- the original ("old arch") ESRGAN layout, which community models and spandrel use: one `model.` Sequential,
  `model.0` (first conv), `model.1.sub.{i}.RDB{j}.conv{k}.0` (the blocks), `model.1.sub.{nb}` (trunk conv),
  then one conv every three entries per upsampling step (`model.3`, `model.6`), the HR conv and the last conv;
- a DataParallel `module.` prefix on any of them.
SRResNet (SRGAN) checkpoints are the native layout written by train_gan.py.
"""
from __future__ import annotations

import math
import re

import torch

from models.gan.esrgan.config import RRDBNetConfig
from utils.errors import ConversionError

Tensors = dict[str, torch.Tensor]

_ESRGAN_NAMES = {"trunk_conv": "conv_body", "HRconv": "conv_hr"}


def strip_wrappers(sd: Tensors) -> Tensors:
    """Take off BasicSR's `params_ema.` / `params.` (EMA weights first) and a `module.` prefix."""
    for wrapper in ("params_ema.", "params."):
        inner = {k[len(wrapper):]: v for k, v in sd.items() if k.startswith(wrapper)}
        if inner:
            sd = inner
            break
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def detect_layout(sd: Tensors) -> str:
    """'native' (Real-ESRGAN / BasicSR), 'esrgan' (RRDB_trunk names) or 'old' (the model.N Sequential)."""
    if "conv_first.weight" in sd and any(k.startswith("body.") for k in sd):
        return "native"
    if "conv_first.weight" in sd and any(k.startswith("RRDB_trunk.") for k in sd):
        return "esrgan"
    if "model.0.weight" in sd and any(k.startswith("model.1.sub.") for k in sd):
        return "old"
    raise ConversionError("no RRDBNet in this checkpoint (neither conv_first + body.N, conv_first + RRDB_trunk.N, "
                          "nor model.0 + model.1.sub.N): pass an ESRGAN / Real-ESRGAN .pth or a native esrgan file")


def _from_esrgan(sd: Tensors) -> Tensors:
    out = {}
    for k, v in sd.items():
        m = re.match(r"RRDB_trunk\.(\d+)\.RDB(\d)\.(conv\d)\.(weight|bias)$", k)
        if m:
            out[f"body.{m[1]}.rdb{m[2]}.{m[3]}.{m[4]}"] = v
            continue
        head, _, kind = k.rpartition(".")
        up = re.fullmatch(r"upconv(\d+)", head)
        out[f"conv_up{up[1]}.{kind}" if up else f"{_ESRGAN_NAMES.get(head, head)}.{kind}"] = v
    return out


def _from_old(sd: Tensors) -> Tensors:
    indices = sorted({int(k.split(".")[1]) for k in sd if re.match(r"model\.\d+\.(weight|bias)$", k)})
    blocks = {int(m[1]) for k in sd if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k))}
    trunk = len(blocks)  # the trunk conv follows the blocks in model.1.sub
    # after model.0: upsampling steps at 3, 6, ...; then the HR conv and, two entries later, the last conv
    *ups, hr, last = [i for i in indices if i > 1]
    names = {0: "conv_first", hr: "conv_hr", last: "conv_last", **{i: f"conv_up{n}" for n, i in enumerate(ups, 1)}}
    out = {}
    for k, v in sd.items():
        m = re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.(conv\d)\.0\.(weight|bias)$", k)
        if m:
            out[f"body.{m[1]}.rdb{m[2]}.{m[3]}.{m[4]}"] = v
        elif (m := re.match(rf"model\.1\.sub\.{trunk}\.(weight|bias)$", k)):
            out[f"conv_body.{m[1]}"] = v
        elif (m := re.match(r"model\.(\d+)\.(weight|bias)$", k)) and int(m[1]) in names:
            out[f"{names[int(m[1])]}.{m[2]}"] = v
        else:
            raise ConversionError(f"unexpected key '{k}' in an old-arch ESRGAN checkpoint (ESRGAN+ and other variants "
                                  "with extra layers are not this model)")
    return out


def convert_rrdbnet(sd: Tensors) -> Tensors:
    """Any RRDBNet layout above -> the native (Real-ESRGAN) names; the tensors are not copied."""
    sd = strip_wrappers(dict(sd))
    layout = detect_layout(sd)
    if layout == "esrgan":
        return _from_esrgan(sd)
    if layout == "old":
        return _from_old(sd)
    return sd


def to_old_arch(sd: Tensors, config: RRDBNetConfig) -> Tensors:
    """Native names -> the old-arch `model.N` layout (the one spandrel and community tools load)."""
    n = len(config.upsample_factors)
    names = {"conv_first": 0, "conv_hr": 3 * n + 2, "conv_last": 3 * n + 4,
             **{f"conv_up{i}": 3 * i for i in range(1, n + 1)}}
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.rdb(\d)\.(conv\d)\.(weight|bias)$", k)
        head, _, kind = k.rpartition(".")
        if m:
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.{m[3]}.0.{m[4]}"] = v
        elif head == "conv_body":
            out[f"model.1.sub.{config.num_block}.{kind}"] = v
        else:
            out[f"model.{names[head]}.{kind}"] = v
    return out


def infer_rrdbnet_config(sd: Tensors) -> RRDBNetConfig:
    """Channels, widths, block count, scale and pixel unshuffle read off a converted (native) state dict."""
    try:
        first, last = sd["conv_first.weight"], sd["conv_last.weight"]
        grow = sd["body.0.rdb1.conv1.weight"]
    except KeyError as err:
        raise ConversionError(f"no {err.args[0]} in this RRDBNet checkpoint: it is not a complete ESRGAN / "
                              "Real-ESRGAN generator") from None
    blocks = {int(m[1]) for k in sd if (m := re.match(r"body\.(\d+)\.", k))}
    ups = sorted(int(m[1]) for k in sd if (m := re.match(r"conv_up(\d+)\.weight$", k)))
    c_in, c_out = int(first.shape[1]), int(last.shape[0])
    unshuffle = 1
    # Real-ESRGAN x2 / x1 models take pixel-unshuffled input: 4x or 16x the image channels (spandrel's rule too)
    if c_in in (4 * c_out, 16 * c_out):
        unshuffle = int(math.isqrt(c_in // c_out))
    factors = (2,) * len(ups)
    total = 2 ** len(ups)
    if total % unshuffle:
        raise ConversionError(f"this RRDBNet upsamples x{total} but unshuffles its input by {unshuffle}: not a "
                              "layout this package knows")
    return RRDBNetConfig(scale=total // unshuffle, in_channels=c_in // unshuffle ** 2, out_channels=c_out,
                         num_feat=int(first.shape[0]), num_block=len(blocks), num_grow_ch=int(grow.shape[0]),
                         unshuffle=unshuffle, upsample_factors=factors)
