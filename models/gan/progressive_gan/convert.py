"""Progressive GAN checkpoints to the native layout.

Formats:
- pytorch_GAN_zoo PGAN checkpoints (`torch.save(model.getStateDict())`): a dict with `netG`, `netD`,
  optionally `avgG` (the generator's moving average, the one to sample from) and a pickled `config`
  object. Flattened by the loader, the keys read `avgG.formatLayer.module.weight`,
  `netG.scaleLayers.3.1.module.bias`, `netG.toRGBLayers.4.module.weight`, `netD.fromRGBLayers.0...`.
  The module names are the native ones: converting means choosing the generator and dropping its prefix.
- a bare generator `state_dict` (possibly behind DataParallel's `module.`), and native safetensors.
"""
from __future__ import annotations

import re

import torch

from models.gan.progressive_gan.config import ProGANConfig
from utils.errors import ConversionError

GENERATOR_PREFIXES = ("avgG.", "netG.", "generator.", "module.")


def split_checkpoint(sd: dict[str, torch.Tensor], part: str = "G") -> dict[str, torch.Tensor]:
    """The generator ('G', the averaged one when present) or discriminator ('D') of a PGAN checkpoint."""
    prefixes = GENERATOR_PREFIXES if part == "G" else ("netD.", "discriminator.", "module.")
    for prefix in prefixes:
        picked = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if picked:
            sd = picked
            break
    if part == "G" and sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def convert_generator(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return split_checkpoint(dict(sd), "G")


def convert_discriminator(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return split_checkpoint(dict(sd), "D")


def infer_generator_config(sd: dict[str, torch.Tensor]) -> ProGANConfig:
    """Scale depths, latent length and output channels read off a generator's shapes."""
    g = convert_generator(sd)
    if "formatLayer.module.weight" not in g or "groupScale0.0.module.weight" not in g:
        raise ConversionError("no Progressive GAN generator (formatLayer / groupScale0 keys) in this checkpoint: "
                              "pass a pytorch_GAN_zoo PGAN checkpoint or a native progressive_gan file")
    scales = sorted({int(m.group(1)) for k in g if (m := re.match(r"scaleLayers\.(\d+)\.0\.module\.weight$", k))})
    depths = [g["groupScale0.0.module.weight"].shape[0]] + [g[f"scaleLayers.{s}.0.module.weight"].shape[0]
                                                             for s in scales]
    return ProGANConfig(depths=tuple(int(d) for d in depths), latent_dim=int(g["formatLayer.module.weight"].shape[1]),
                        channels=int(g["toRGBLayers.0.module.weight"].shape[0]))


class _InertConfig:
    """Stands in for pytorch_GAN_zoo's pickled BaseConfig: its attributes are kept as data, nothing runs."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {})


# the module the release pickles its training configuration from (models/utils/config.py: BaseConfig)
_CONFIG_NAMES = ("models.utils.config",)


def load_pgan_checkpoint(path) -> dict[str, torch.Tensor]:
    """The tensors of a pytorch_GAN_zoo checkpoint, which pickles its config object beside the weights.

    torch.load(weights_only=True) refuses that object's class; it is allowed here as an inert stand-in
    (attributes only), so the file is read safely in both the zip and the legacy torch format.
    """
    from pathlib import Path

    from utils.errors import WeightsError
    from utils.weights import flatten_tensors, load_state_dict

    path = Path(path)
    try:
        return load_state_dict(path)
    except WeightsError as err:
        if "Python objects" not in str(err):
            raise
    stand_ins = []
    for module in _CONFIG_NAMES:
        cls = type("BaseConfig", (_InertConfig,), {"__module__": module})
        stand_ins.append(cls)
    try:
        with torch.serialization.safe_globals(stand_ins):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any refusal is the same user-facing problem
        from utils.weights.files import weights_only_reason

        raise WeightsError(f"{path.name} holds Python objects besides the weights that a safe load refuses, or is "
                           f"corrupt ({weights_only_reason(err)}): it is not a pytorch_GAN_zoo PGAN checkpoint") from None
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != "config"}
    return flatten_tensors(obj)
