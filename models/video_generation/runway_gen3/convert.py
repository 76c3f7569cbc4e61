"""AnimateDiff motion adapters: the released layout (guoyww/AnimateDiff `mm_sd_v15_v2.ckpt`, `v3_sd15_mm.ckpt`)
<-> the native layout (= diffusers' `MotionAdapter`), and the config read off the shapes.

    released                                                   native / diffusers
    ...motion_modules.i.temporal_transformer.norm / proj_in    ...motion_modules.i.norm / proj_in
    ...transformer_blocks.K.attention_blocks.{0,1}             ...transformer_blocks.K.attn{1,2}
    ...transformer_blocks.K.norms.{0,1} / ff_norm / ff         ...transformer_blocks.K.norm{1,2} / norm3 / ff
    ...attention_blocks.{0,1}.pos_encoder.pe                   ...transformer_blocks.K.pos_embed.pe (one table;
                                                                 both attentions of a block add the same one)
"""
from __future__ import annotations

from typing import Mapping

import torch

from models.video_generation.runway_gen3.motion import MotionAdapter, MotionAdapterConfig, SinusoidalFramePositions
from utils.errors import ConversionError

StateDict = dict[str, torch.Tensor]

_RENAMES = ((".temporal_transformer.", "."), (".attention_blocks.0.", ".attn1."), (".attention_blocks.1.", ".attn2."),
            (".norms.0.", ".norm1."), (".norms.1.", ".norm2."), (".ff_norm.", ".norm3."))


def is_released_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(".temporal_transformer." in k for k in sd)


def released_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        if ".pos_encoder.pe" in key:
            if ".attention_blocks.0.pos_encoder." in key:  # the second attention's table is the same one
                head = key.split(".attention_blocks.0.")[0].replace(".temporal_transformer.", ".")
                out[f"{head}.pos_embed.pe"] = value
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        out[key] = value
    return out


def native_to_released(sd: Mapping[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        head, sep, tail = key.partition(".motion_modules.")
        index, _, rest = tail.partition(".")
        rest = "." + rest + "."
        if rest.endswith(".pos_embed.pe."):
            block = rest[: -len(".pos_embed.pe.")]
            for a in (0, 1):
                out[f"{head}{sep}{index}.temporal_transformer{block}.attention_blocks.{a}.pos_encoder.pe"] = value
            continue
        for old, new in _RENAMES[1:]:
            rest = rest.replace(new, old)
        out[f"{head}{sep}{index}.temporal_transformer{rest[:-1]}"] = value
    return out


def read_adapter_config(native: Mapping[str, torch.Tensor], heads: int = 8, groups: int = 32) -> MotionAdapterConfig:
    """The config of a native state dict. Head count and norm groups are not stored (8 and 32 in every
    AnimateDiff release); the frame table's length is, when its buffer is present (else 32)."""
    levels = sorted({int(k.split(".")[1]) for k in native if k.startswith("down_blocks.")})
    if not levels:
        raise ConversionError("not a motion adapter: no down_blocks.N.motion_modules keys")
    chans = tuple(int(native[f"down_blocks.{i}.motion_modules.0.proj_in.weight"].shape[0]) for i in levels)
    per_block = len({k.split(".")[3] for k in native if k.startswith("down_blocks.0.motion_modules.")})
    pe = next((v for k, v in native.items() if k.endswith("pos_embed.pe")), None)
    return MotionAdapterConfig(block_out_channels=chans, motion_layers_per_block=per_block,
                               motion_num_attention_heads=heads, motion_norm_num_groups=groups,
                               motion_max_seq_length=int(pe.shape[1]) if pe is not None else 32,
                               use_motion_mid_block=any(k.startswith("mid_block.") for k in native))


def adapter_from_state(sd: Mapping[str, torch.Tensor], heads: int = 8, groups: int = 32) -> MotionAdapter:
    """A MotionAdapter from a released or diffusers-layout state dict (built on meta, tensors handed over)."""
    from utils.weights import load_into

    native = released_to_native(sd) if is_released_layout(sd) else dict(sd)
    cfg = read_adapter_config(native, heads, groups)
    with torch.device("meta"):
        model = MotionAdapter(cfg)
    tables = {}
    if not any(k.endswith("pos_embed.pe") for k in native):  # diffusers' converter drops them: rebuild
        tables = {k: SinusoidalFramePositions(b.shape[-1], cfg.motion_max_seq_length).pe
                  for k, b in model.named_buffers() if k.endswith("pos_embed.pe")}
    load_into(model, {**tables, **native}, what="motion adapter checkpoint")
    return model.eval()


def load_adapter(source, preset: str | None = None) -> MotionAdapter:
    """A motion adapter from a released file (`mm_sd_v15_v2.ckpt`, `v3_sd15_mm.ckpt`, .safetensors), a diffusers
    `MotionAdapter` folder (config.json + weights; its head count and groups are read from the config), or a
    hub id (the preset's release file from guoyww/animatediff by default)."""
    import json
    from pathlib import Path

    from utils.errors import UserError
    from utils.weights import load_folder_state_dict, load_state_dict
    from utils.weights.hub import locate

    if source is None:
        from models.video_generation.runway_gen3.spec import SPEC

        found = next((w for w in SPEC.weights if w.preset == preset), None)
        if found is None:
            raise UserError(f"preset '{preset}' has no released motion adapter: pass one (--weights mm_sd_v15_v2.ckpt)")
        path = locate(found.source, what=f"AnimateDiff motion adapter '{found.source}'", filename=found.file)
    else:
        path = locate(source, ["config.json", "*.safetensors"], f"motion adapter '{source}'")
    heads, groups = 8, 32
    if Path(path).is_dir():
        cfg_file = Path(path) / "config.json"
        if cfg_file.is_file():
            raw = json.loads(cfg_file.read_text())
            heads = int(raw.get("motion_num_attention_heads", heads))
            groups = int(raw.get("motion_norm_num_groups", groups))
        sd = load_folder_state_dict(path)
    else:
        sd = load_state_dict(path)
    if not any(".motion_modules." in k for k in sd):
        raise UserError(f"{Path(path).name} holds no motion modules (no *.motion_modules.* keys): pass an AnimateDiff "
                        "motion adapter (mm_sd_v15_v2.ckpt) or a diffusers MotionAdapter folder")
    return adapter_from_state(sd, heads, groups)


__all__ = ["adapter_from_state", "load_adapter", "is_released_layout", "native_to_released", "read_adapter_config",
           "released_to_native"]
