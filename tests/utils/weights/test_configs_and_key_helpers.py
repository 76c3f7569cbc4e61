"""utils.weights: configs settled from tensor shapes, and the renaming helpers every converter shares."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from utils.errors import UserError, WeightsError
from utils.weights.configs import check_config, matching_presets, settle_config
from utils.weights.hub import locate
from utils.weights.keys import strip_prefix, strip_shared_prefixes, swap_halves


@dataclass(frozen=True)
class Toy:
    width: int = 8
    depth: int = 2
    groups: int = 4
    scale: float = 1.0


PRESETS = {"small": Toy(), "small-alt": Toy(scale=2.0), "wide": Toy(width=64, groups=32)}


def test_a_preset_with_the_file_sizes_is_taken_whole():
    cfg, name = settle_config({"width": 64, "depth": 2}, PRESETS, Toy, ["groups"], "the toy")
    assert (cfg, name) == (PRESETS["wide"], "wide")
    # several presets have the sizes: the preferred one, or the first when they agree on what matters
    assert settle_config({"width": 8, "depth": 2}, PRESETS, Toy, ["groups"], "the toy", prefer="small-alt")[1] == "small-alt"
    assert settle_config({"width": 8, "depth": 2}, PRESETS, Toy, ["groups"], "the toy")[1] == "small"
    with pytest.raises(UserError, match="differ in scale"):
        settle_config({"width": 8, "depth": 2}, PRESETS, Toy, ["groups", "scale"], "the toy")
    assert matching_presets({"width": 8}, PRESETS) == ["small", "small-alt"]


def test_sizes_no_preset_has_are_refused_in_one_line_naming_the_fields():
    with pytest.raises(UserError) as err:
        settle_config({"width": 24, "depth": 3}, PRESETS, Toy, ["groups", "scale"], "the toy in t.bin")
    msg = str(err.value)
    assert msg.startswith("the toy in t.bin has sizes no preset has") and "groups and scale are not stored" in msg
    assert "config=Toy(width=24, depth=3, groups=..., scale=...)" in msg and "\n" not in msg
    # nothing undetermined: the config built from the shapes alone
    built = Toy(width=24, depth=3)
    assert settle_config({"width": 24, "depth": 3}, PRESETS, Toy, [], "the toy", fallback=built) == (built, None)


def test_an_explicit_config_wins_after_a_check_against_the_shapes():
    mine = Toy(width=24, depth=3, groups=6)
    assert settle_config({"width": 24, "depth": 3}, PRESETS, Toy, ["groups"], "the toy", config=mine) == (mine, None)
    with pytest.raises(UserError, match=r"width is 24 but the weights have 25; depth is 3 but the weights have 4"):
        check_config(mine, {"width": 25, "depth": 4}, "the toy")


def test_strip_prefix_keeps_one_component():
    sd = {"model.diffusion_model.a": 1, "first_stage_model.b": 2, "model.diffusion_model.c.d": 3}
    assert strip_prefix(sd, "model.diffusion_model.") == {"a": 1, "c.d": 3}
    assert strip_prefix(sd, "cond_stage_model.") == {}


def test_strip_shared_prefixes_takes_off_only_what_every_key_carries():
    sd = {"module.netG.main.0.weight": 1, "module.netG.main.1.bias": 2}
    assert strip_shared_prefixes(sd, ("module.", "netG.")) == {"main.0.weight": 1, "main.1.bias": 2}
    assert strip_shared_prefixes(sd, ("netG.", "module.")) == {"netG.main.0.weight": 1, "netG.main.1.bias": 2}
    mixed = {"module.a": 1, "b": 2}
    assert strip_shared_prefixes(mixed) == mixed


def test_swap_halves_exchanges_shift_and_scale():
    shift, scale = torch.arange(6.0).reshape(3, 2), -torch.arange(6.0).reshape(3, 2)
    swapped = swap_halves(torch.cat([shift, scale]))
    assert torch.equal(swapped, torch.cat([scale, shift]))
    assert torch.equal(swap_halves(swapped), torch.cat([shift, scale]))


def test_locate_returns_local_paths_and_names_the_weights_in_errors(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"")
    assert locate(f) == f and locate(str(tmp_path), patterns=["unet/*"]) == tmp_path
    with pytest.raises(WeightsError, match=r"^SDXL weights 'nope\.safetensors': weights not found"):
        locate("nope.safetensors", ["unet/*"], "SDXL weights 'nope.safetensors'")
    with pytest.raises(WeightsError, match=r"^weights not found"):
        locate(tmp_path / "missing" / "x.ckpt")
