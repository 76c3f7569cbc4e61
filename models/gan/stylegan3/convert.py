"""From the released checkpoint layouts to this package's networks.

Formats:

- **NVlabs .pkl** (stylegan3, stylegan2-ada-pytorch): read as data by `utils.weights.nvlabs` (the
  embedded source is never run). The generator's pickled constructor arguments give the config
  (`config_from_nvlabs`); its state dict is already in the native layout (the networks here use
  NVlabs' module names), so `convert_nvlabs` only checks it.
- **rosinality's stylegan2-pytorch .pt** (`{'g_ema': ..., 'latent_avg': ...}` or the `g`/`g_ema` of its
  training checkpoints): `convert_rosinality` maps `style.{i}` -> `mapping.fc{i-1}`, `input.input` ->
  `synthesis.b4.const`, `conv1` / `to_rgb1` -> `b4.conv1` / `b4.torgb`, `convs.{2k}` / `convs.{2k+1}` /
  `to_rgbs.{k}` -> `b{2^(k+3)}.conv0` / `.conv1` / `.torgb`, `noises.noise_{i}` -> the layers'
  `noise_const`; the config comes from the shapes (`rosinality_config`). Its mean w ('latent_avg')
  becomes `mapping.w_avg` (estimated from 10k seeded z when the file has none).
- **native safetensors**: this zoo's own (config in the metadata).
"""
from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any, Mapping

import torch

from models.gan.stylegan3.config import StyleGANConfig
from utils.errors import ConversionError, WeightsError
from utils.weights.keys import key_report

__all__ = ["config_from_nvlabs", "discriminator_config_from_nvlabs", "nvlabs_architecture", "convert_nvlabs",
           "is_rosinality", "rosinality_config", "convert_rosinality", "detect_format", "expected_keys"]

# Constructor arguments that change speed or training only, never the outputs of a trained network.
_IGNORED = {"fused_modconv_default", "fp16_channels_last", "channels_last", "class_name"}
_SYNTHESIS_FIELDS = {
    # NVlabs kwarg -> config field
    "channel_base": "channel_base", "channel_max": "channel_max", "num_fp16_res": "num_fp16_res",
    "conv_clamp": "conv_clamp", "num_layers": "num_layers", "num_critical": "num_critical",
    "first_cutoff": "first_cutoff", "first_stopband": "first_stopband", "last_stopband_rel": "last_stopband_rel",
    "margin_size": "margin_size", "output_scale": "output_scale", "conv_kernel": "conv_kernel",
    "filter_size": "filter_size", "lrelu_upsampling": "lrelu_upsampling", "use_radial_filters": "use_radial_filters",
    "magnitude_ema_beta": "magnitude_ema_beta", "architecture": "synthesis_architecture",
    "resample_filter": "resample_filter", "use_noise": "use_noise",
}
_MAPPING_FIELDS = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr", "w_avg_beta": "w_avg_beta"}


def nvlabs_architecture(children: Mapping[str, Any], init_kwargs: Mapping[str, Any]) -> str:
    """'stylegan3-t', 'stylegan3-r' or 'stylegan2' from a pickled generator's structure and arguments."""
    synthesis = children.get("synthesis")
    names = set(getattr(synthesis, "children", {}) or {})
    if "input" in names:
        return "stylegan3-r" if int(init_kwargs.get("conv_kernel", 3)) == 1 else "stylegan3-t"
    if "b4" in names:
        return "stylegan2"
    raise WeightsError("the pickled generator is neither a StyleGAN3 (synthesis.input) nor a StyleGAN2 "
                       "(synthesis.b4) network: this loader reads NVlabs' stylegan3 / stylegan2-ada generators")


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        return v.item()  # numpy scalars
    if isinstance(v, (list, tuple)):
        return tuple(float(x) for x in v)
    return v


def config_from_nvlabs(init_kwargs: Mapping[str, Any], architecture: str, what: str = "the pickled generator",
                       discriminator: Mapping[str, Any] | None = None) -> StyleGANConfig:
    """The config of an NVlabs Generator from its constructor arguments (and those of its D, when given)."""
    kw = dict(init_kwargs)
    values: dict[str, Any] = {"architecture": architecture}
    try:
        values.update(image_size=int(kw.pop("img_resolution")), channels=int(kw.pop("img_channels")),
                      num_classes=int(kw.pop("c_dim")), z_dim=int(kw.pop("z_dim")), w_dim=int(kw.pop("w_dim")))
    except KeyError as err:
        raise WeightsError(f"{what} lacks the constructor argument {err}: it is not an NVlabs StyleGAN generator") from None
    unknown = []
    mapping = dict(kw.pop("mapping_kwargs", None) or {})
    for key, value in mapping.items():
        default = (key == "activation" and value == "lrelu") or \
            (key in ("embed_features", "layer_features") and value in (None, values["w_dim"]))
        if key in _MAPPING_FIELDS:
            values[_MAPPING_FIELDS[key]] = _plain(value)
        elif not default:
            unknown.append(f"mapping_kwargs.{key}={value!r}")
    values.setdefault("mapping_layers", 8 if architecture == "stylegan2" else 2)
    for key, value in kw.items():
        if key in _SYNTHESIS_FIELDS:
            values[_SYNTHESIS_FIELDS[key]] = _plain(value)
        elif key not in _IGNORED:
            unknown.append(f"{key}={value!r}")
    if unknown:
        raise WeightsError(f"{what} was built with arguments this loader does not reproduce ({', '.join(unknown)}): "
                           "only NVlabs' released stylegan3 / stylegan2 generator options are supported")
    if architecture == "stylegan2":
        values.setdefault("conv_clamp", 256)  # StyleGAN2's synthesis blocks default to 256 too
    if discriminator is not None:
        values.update(discriminator_config_from_nvlabs(discriminator))
    if "resample_filter" in values:
        values["resample_filter"] = tuple(values["resample_filter"])
    return StyleGANConfig(**values)


def discriminator_config_from_nvlabs(init_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The discriminator fields of the config from NVlabs' Discriminator arguments."""
    kw = dict(init_kwargs)
    out: dict[str, Any] = {}
    for key, name in (("channel_base", "d_channel_base"), ("channel_max", "d_channel_max"),
                      ("architecture", "d_architecture")):
        if key in kw:
            out[name] = _plain(kw[key])
    epilogue = dict(kw.get("epilogue_kwargs") or {})
    if "mbstd_group_size" in epilogue:
        out["mbstd_group_size"] = int(epilogue["mbstd_group_size"])
    if "mbstd_num_channels" in epilogue:
        out["mbstd_num_channels"] = int(epilogue["mbstd_num_channels"])
    return out


def expected_keys(config: StyleGANConfig, discriminator: bool = False) -> dict[str, tuple[int, ...]]:
    """key -> shape of the native generator (or discriminator) of `config`, built on the meta device."""
    from models.gan.stylegan3.model import StyleGANDiscriminator, StyleGANGenerator

    with torch.device("meta"):
        net = StyleGANDiscriminator(config) if discriminator else StyleGANGenerator(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def convert_nvlabs(state_dict: Mapping[str, torch.Tensor], config: StyleGANConfig,
                   discriminator: bool = False, what: str = "NVlabs network") -> dict[str, torch.Tensor]:
    """An NVlabs G / G_ema / D state dict -> native (the same names); missing, unexpected or misshapen keys
    are one ConversionError."""
    expected = expected_keys(config, discriminator)
    sd = dict(state_dict)
    if set(sd) != set(expected):
        raise ConversionError(f"the {what} does not match a {config.architecture} network of its own arguments "
                              f"({key_report(set(expected) - set(sd), set(sd) - set(expected))})")
    bad = [f"{k} {tuple(v.shape)} vs {expected[k]}" for k, v in sd.items() if tuple(v.shape) != expected[k]]
    if bad:
        raise ConversionError(f"the {what} has tensors of the wrong shape ({'; '.join(bad[:4])}): it is not the "
                              "network its arguments describe")
    return sd


# -- rosinality ---------------------------------------------------------------------------------------------


def is_rosinality(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return "input.input" in state_dict and any(k.startswith("style.") for k in state_dict)


def _rosinality_generator(sd: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The generator's tensors of a rosinality checkpoint (g_ema preferred) and its latent_avg."""
    avg = sd.get("latent_avg") if isinstance(sd.get("latent_avg"), torch.Tensor) else None
    for key in ("g_ema", "g"):
        if isinstance(sd.get(key), Mapping):
            return dict(sd[key]), avg
    prefixed = {k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("g_ema.")}
    if prefixed:
        return prefixed, avg
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor) and k != "latent_avg"}, avg


def rosinality_config(sd: Mapping[str, torch.Tensor]) -> StyleGANConfig:
    """A StyleGAN2 config read off the shapes of a rosinality generator (channels, depth, sizes)."""
    style = sorted(int(k.split(".")[1]) for k in sd if k.startswith("style.") and k.endswith(".weight"))
    if not style:
        raise WeightsError("a rosinality checkpoint holds style.{i}.weight mapping layers; this one has none")
    w_dim, z_dim = sd[f"style.{style[0]}.weight"].shape
    n_up = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    size = 2 ** (n_up + 2)
    chans = {4: sd["input.input"].shape[1]}
    for k in range(n_up):
        chans[2 ** (k + 3)] = sd[f"convs.{2 * k}.conv.weight"].shape[1]
    # rosinality's channels follow min(channel_base / res, channel_max): find those two numbers
    channel_max = max(chans.values())
    base = max(c * r for r, c in chans.items() if c < channel_max) if any(c < channel_max for c in chans.values()) \
        else channel_max * size
    if any(min(base // r, channel_max) != c for r, c in chans.items()):
        raise WeightsError(f"the rosinality generator's channels {dict(sorted(chans.items()))} do not follow "
                           "min(channel_base / resolution, channel_max): this loader cannot rebuild it")
    return StyleGANConfig(architecture="stylegan2", image_size=size, z_dim=int(z_dim), w_dim=int(w_dim),
                          mapping_layers=len(style), channel_base=int(base), channel_max=int(channel_max),
                          conv_clamp=None, num_fp16_res=0, d_channel_base=int(base), d_channel_max=int(channel_max))


def convert_rosinality(state_dict: Mapping[str, Any], config: StyleGANConfig | None = None,
                       latent_avg: torch.Tensor | None = None) -> tuple[dict[str, torch.Tensor], StyleGANConfig]:
    """(native generator state dict, config) of a rosinality stylegan2-pytorch generator."""
    from utils.nn.stylegan.upfirdn2d import setup_filter

    sd, avg = _rosinality_generator(state_dict)
    avg = latent_avg if latent_avg is not None else avg
    config = config or rosinality_config(sd)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(src: str) -> torch.Tensor:
        if src not in sd:
            raise ConversionError(f"the rosinality checkpoint lacks {src}: it is not a stylegan2-pytorch Generator "
                                  f"of {config.image_size}px")
        used.add(src)
        return sd[src]

    style = sorted(int(k.split(".")[1]) for k in sd if k.startswith("style.") and k.endswith(".weight"))
    for i, s in enumerate(style):
        out[f"mapping.fc{i}.weight"] = take(f"style.{s}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{s}.bias")
    out["synthesis.b4.const"] = take("input.input")[0]

    def styled(src: str, dst: str, noise: int) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = take(f"noises.noise_{noise}")[0, 0]

    def torgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)

    styled("conv1", "synthesis.b4.conv1", 0)
    torgb("to_rgb1", "synthesis.b4.torgb")
    for k in range(int(math.log2(config.image_size)) - 2):
        res = 2 ** (k + 3)
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2)
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    # the constant FIR filters rosinality keeps as Blur/Upsample kernels (not loaded: they are constants)
    expected = expected_keys(config)
    for key in expected:
        if key.endswith("resample_filter"):
            out[key] = setup_filter(list(config.resample_filter))
    leftover = {k for k in sd if k not in used and not k.endswith(".kernel")}
    if leftover:
        raise ConversionError(f"the rosinality checkpoint has tensors this converter does not place "
                              f"({key_report((), leftover)}): it is not a plain stylegan2-pytorch Generator")
    if avg is None:
        avg = _estimate_w_avg(out, config)
    out["mapping.w_avg"] = avg.reshape(-1).to(torch.float32)
    return convert_nvlabs(out, config, what="rosinality generator"), config


def _estimate_w_avg(sd: Mapping[str, torch.Tensor], config: StyleGANConfig, n: int = 10_000) -> torch.Tensor:
    """The mean of w over n seeded z (a rosinality file without latent_avg); it is the truncation centre."""
    from utils.nn.stylegan.mapping import MappingNetwork

    mapping = MappingNetwork(config.z_dim, 0, config.w_dim, None, config.mapping_layers,
                             lr_multiplier=config.mapping_lr, w_avg_beta=None)
    mapping.load_state_dict({k.removeprefix("mapping."): v.float() for k, v in sd.items() if k.startswith("mapping.")})
    with torch.no_grad():
        z = torch.randn(n, config.z_dim, generator=torch.Generator().manual_seed(0))
        return mapping(z, None).mean(0)


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """'rosinality' or 'native' (NVlabs names) for a file's tensors."""
    flat = state_dict.get("g_ema") if isinstance(state_dict.get("g_ema"), Mapping) else state_dict
    if is_rosinality(flat) or any(k.startswith("g_ema.style.") for k in state_dict):
        return "rosinality"
    if any(k.startswith("mapping.") for k in flat) and any(k.startswith("synthesis.") for k in flat):
        return "native"
    raise WeightsError("the file holds neither a StyleGAN generator in NVlabs' layout (mapping.*, synthesis.*) nor "
                       "a rosinality stylegan2-pytorch one (style.*, convs.*): pass a stylegan3 / stylegan2 checkpoint")


def config_fields() -> set[str]:
    return {f.name for f in fields(StyleGANConfig)}


def with_discriminator_of(config: StyleGANConfig, other: StyleGANConfig) -> StyleGANConfig:
    """`config` with the discriminator fields of `other`."""
    d = {f: getattr(other, f) for f in ("d_channel_base", "d_channel_max", "mbstd_group_size", "mbstd_num_channels",
                                        "d_architecture")}
    return replace(config, **d)
