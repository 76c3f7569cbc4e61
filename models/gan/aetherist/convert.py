"""EG3D's released networks (NVlabs .pkl) to the native layout, and the config read off them.

A .pkl is read as data by `utils.weights.nvlabs` (nothing in it runs): the generator's constructor
arguments (`init_kwargs`: z/c/w sizes, `rendering_kwargs`, `sr_kwargs`, mapping depth, channels) give the
config, and its state dict is already in our module names (we kept EG3D's), so conversion only checks
keys and shapes. Native checkpoints are safetensors with the config in their metadata.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

import torch

from models.gan.aetherist.config import EG3D_PRESETS, AetheristConfig
from models.gan.aetherist.superresolution import SR_MODULES
from utils.errors import WeightsError

__all__ = ["config_from_nvlabs", "expected_keys", "check_keys", "is_eg3d_state_dict"]


def _get(d: Mapping[str, Any], key: str, default: Any = None) -> Any:
    v = d.get(key, default) if isinstance(d, Mapping) else default
    return default if v is None else v


def config_from_nvlabs(init_kwargs: Mapping[str, Any], what: str = "the pickled generator") -> AetheristConfig:
    """The config of an EG3D TriPlaneGenerator from its constructor arguments."""
    rk = _get(init_kwargs, "rendering_kwargs", {})
    if not rk:
        raise WeightsError(f"{what} has no rendering_kwargs: it is not an EG3D TriPlaneGenerator (a StyleGAN .pkl "
                           "loads with --model stylegan3)")
    sr = str(_get(rk, "superresolution_module", "")).rsplit(".", 1)[-1]
    if sr not in SR_MODULES:
        raise WeightsError(f"{what} uses the super-resolution module '{sr}', which this package does not build "
                           f"(known: {', '.join(SR_MODULES)})")
    res = int(init_kwargs["img_resolution"])
    if res != SR_MODULES[sr][1]:
        raise WeightsError(f"{what}: {sr} outputs {SR_MODULES[sr][1]} px but img_resolution is {res}")
    mapping = _get(init_kwargs, "mapping_kwargs", {})
    start, end = rk.get("ray_start", 2.25), rk.get("ray_end", 3.3)
    base = EG3D_PRESETS["eg3d-ffhq-512"]
    return replace(base, latent_dim=int(init_kwargs["z_dim"]), c_dim=int(init_kwargs["c_dim"]),
                   w_dim=int(init_kwargs["w_dim"]), mapping_layers=int(_get(mapping, "num_layers", 8)),
                   c_scale=float(_get(rk, "c_scale", 1.0)),
                   c_gen_conditioning_zero=bool(_get(rk, "c_gen_conditioning_zero", False)),
                   channel_base=int(_get(init_kwargs, "channel_base", 32768)),
                   channel_max=int(_get(init_kwargs, "channel_max", 512)),
                   num_fp16_res=int(_get(init_kwargs, "num_fp16_res", 0)),
                   conv_clamp=init_kwargs.get("conv_clamp"),
                   decoder_lr_mul=float(_get(rk, "decoder_lr_mul", 1.0)),
                   image_resolution=res, neural_rendering_resolution=SR_MODULES[sr][0] if sr != "SuperresolutionHybrid8XDC" else 128,
                   sr_module=sr, sr_num_fp16_res=int(_get(init_kwargs, "sr_num_fp16_res", 0)),
                   sr_antialias=bool(_get(rk, "sr_antialias", True)),
                   sr_noise_mode=str(_get(rk, "superresolution_noise_mode", "none")),
                   depth_resolution=int(rk["depth_resolution"]),
                   depth_resolution_importance=int(rk["depth_resolution_importance"]),
                   ray_start=start if start == "auto" else float(start), ray_end=end if end == "auto" else float(end),
                   box_warp=float(rk["box_warp"]), white_back=bool(_get(rk, "white_back", False)),
                   avg_camera_radius=float(_get(rk, "avg_camera_radius", 2.7)),
                   avg_camera_pivot=tuple(float(v) for v in _get(rk, "avg_camera_pivot", (0, 0, 0.2))),
                   fused_modconv_default=_get(init_kwargs, "fused_modconv_default", "inference_only"))


def expected_keys(config: AetheristConfig, discriminator: bool = False) -> dict[str, tuple[int, ...]]:
    """Key -> shape of our generator (or discriminator) for `config` (built on the CPU, which is quicker than
    the meta device for these many small layers)."""
    from models.gan.aetherist.model import AetheristDiscriminator, TriplaneGenerator

    with torch.no_grad():
        net = AetheristDiscriminator(config).main if discriminator else TriplaneGenerator(config)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_keys(state_dict: Mapping[str, torch.Tensor], config: AetheristConfig, what: str,
               discriminator: bool = False) -> None:
    """A one-line refusal naming missing, unexpected and mis-shaped keys."""
    want = expected_keys(config, discriminator)
    missing = sorted(set(want) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(want))
    wrong = sorted(k for k in set(want) & set(state_dict) if tuple(state_dict[k].shape) != want[k])
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]}: {tuple(state_dict[wrong[0]].shape)} vs "
                 f"{want[wrong[0]]})" if wrong else ""]
        raise WeightsError(f"{what} does not fit this configuration: " + ", ".join(p for p in parts if p) +
                           ": pass the matching --preset or the checkpoint's own file")


def is_eg3d_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith("backbone.synthesis.b4.") for k in state_dict) and "decoder.net.0.weight" in state_dict
