"""Where the modules a LoRA file names land in a native model: `Part`, `LoraComponent`.

A LoRA file names modules in the layout its trainer used: diffusers (`transformer_blocks.0.attn.to_q`),
the official release (`double_blocks.0.img_attn.qkv`), kohya's underscored form of either
(`lora_unet_double_blocks_0_img_attn_qkv`), or a trainer's own (XLabs' `processor.qkv_lora1`). The zoo's
models keep the official layout, so a name resolves to one or more `Part`s of a native module: the module,
the rows of its output that the update covers (diffusers' separate q, k and v are row blocks of the fused
official `qkv`), and whether those rows come with their halves swapped (the AdaLN layers that diffusers
stores as (scale, shift) and the release as (shift, scale)).

Each model package says how its names map (its `lora.py`); everything else here is shared.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from torch import nn

LORA_LAYERS = (nn.Linear, nn.Conv2d)
"""The layer types a LoRA update can target."""


@dataclass(frozen=True)
class Part:
    """The share of one native module that a file's module covers."""

    module: str
    """Native module name, relative to the component's module."""
    rows: tuple[int, int] | None = None
    """[start, stop) of the output rows the update covers; None: all of them."""
    swap: bool = False
    """The file stores these rows with their two halves swapped (diffusers' (scale, shift) AdaLN layers)."""


Routes = Mapping[str, tuple[Part, ...]]


@dataclass
class LoraComponent:
    """One model of a pipeline that LoRA files can adapt (a denoiser or a text encoder)."""

    attr: str
    """Where the pipeline holds it ('transformer', 'unet', 'clip', 'text_encoders.1'); names adapters in messages."""
    module: nn.Module
    """The module the native names are relative to (a text encoder's transformers model)."""
    prefixes: tuple[str, ...]
    """Prefixes the files put in front of this component's module names: diffusers' ('transformer', 'unet',
    'text_encoder_2'), kohya's ('lora_unet', 'lora_te1'), ComfyUI's ('diffusion_model'); '' for bare names."""
    save_prefix: str
    """The diffusers prefix written when saving ('transformer', 'unet', 'text_encoder')."""
    kohya_prefix: str
    """The kohya prefix written when saving ('lora_unet', 'lora_te1', 'lora_te2')."""
    aliases: Routes = field(default_factory=dict)
    """diffusers' names of native modules or parts of them (read, and written by diffusers saves); native
    names route to themselves without being listed."""
    read_aliases: Routes = field(default_factory=dict)
    """Further names that are only read (a trainer's own, e.g. XLabs' `processor.qkv_lora1`)."""
    kohya_uses_aliases: bool = False
    """kohya saves under the diffusers names (the aliases) rather than the native ones: sd-scripts trains SD 1.x
    / 2.x on diffusers' UNet, so their files say `lora_unet_down_blocks_0_attentions_0_...`."""
    _routes: dict[str, tuple[Part, ...]] | None = field(default=None, repr=False)

    def native_modules(self) -> dict[str, nn.Module]:
        """Every layer a LoRA can target, by native name."""
        return adaptable_layers(self.module)

    def routes(self) -> dict[str, tuple[Part, ...]]:
        """Every accepted name (native, aliases, and kohya's underscored form of both) -> its parts."""
        if self._routes is None:
            table: dict[str, tuple[Part, ...]] = {n: (Part(n),) for n in self.native_modules()}
            table.update(self.aliases)
            table.update(self.read_aliases)
            underscored: dict[str, tuple[Part, ...] | None] = {}
            for name, parts in table.items():
                key = name.replace(".", "_")
                if key in table:
                    continue
                # two names that differ only by '.' vs '_' make the underscored form ambiguous: drop it
                underscored[key] = None if key in underscored and underscored[key] != parts else parts
            table.update({k: v for k, v in underscored.items() if v is not None})
            self._routes = table
        return self._routes

    def resolve(self, name: str) -> tuple[Part, ...] | None:
        return self.routes().get(name)

    def export_names(self) -> dict[str, list[tuple[str, Part]]]:
        """native module -> [(diffusers name, the part it covers)], from the aliases (for diffusers saves);
        a native module no alias names exports under its own name."""
        out: dict[str, list[tuple[str, Part]]] = {}
        for name, parts in self.aliases.items():
            if len(parts) == 1:
                out.setdefault(parts[0].module, []).append((name, parts[0]))
        for native in out:
            out[native].sort(key=lambda item: (item[1].rows or (0, 0))[0])
        return out


def adaptable_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The linear and conv layers of `module` by name; a LoRA-wrapped layer under its own name (its base
    layer), so names are the same before and after adapters are injected."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found: dict[str, nn.Module] = {}
    for name, m in module.named_modules():
        if isinstance(m, BaseTunerLayer):
            found[name] = m.get_base_layer()
        elif isinstance(m, LORA_LAYERS) and not _inside_tuner(name, found):
            found[name] = m
    return found


def _inside_tuner(name: str, found: Mapping[str, nn.Module]) -> bool:
    """A module inside a LoRA wrapper (its base layer, its lora_A/lora_B) is not a target of its own."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in found for i in range(1, len(parts)))


def row_blocks(native: str, names: Iterable[str], sizes: Iterable[int]) -> dict[str, tuple[Part, ...]]:
    """Aliases for separate projections fused, in this order, into the rows of `native` (q, k, v -> qkv)."""
    out, start = {}, 0
    for name, size in zip(names, sizes):
        out[name] = (Part(native, (start, start + size)),)
        start += size
    return out


def identity_component(attr: str, module: nn.Module, prefixes: tuple[str, ...], save_prefix: str,
                       kohya_prefix: str) -> LoraComponent:
    """A component whose file names are its own module names (transformers' text encoders)."""
    return LoraComponent(attr, module, prefixes, save_prefix, kohya_prefix)


__all__ = ["LORA_LAYERS", "adaptable_layers", "LoraComponent", "Part", "Routes", "identity_component", "row_blocks"]
