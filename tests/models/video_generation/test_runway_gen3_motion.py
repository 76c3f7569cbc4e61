"""Motion modules: parity with diffusers' MotionAdapter (diffusers layout) at a tiny config."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import MotionAdapter as RefAdapter

from models.video_generation.runway_gen3.motion import MotionAdapter, MotionAdapterConfig
from utils.errors import UserError

TINY = MotionAdapterConfig(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=4,
                           motion_norm_num_groups=8, motion_max_seq_length=16)


def _pair():
    torch.manual_seed(0)
    ref = RefAdapter(block_out_channels=TINY.block_out_channels, motion_layers_per_block=TINY.motion_layers_per_block,
                     motion_num_attention_heads=TINY.motion_num_attention_heads,
                     motion_norm_num_groups=TINY.motion_norm_num_groups,
                     motion_max_seq_length=TINY.motion_max_seq_length).eval()
    with torch.no_grad():  # diffusers zero-initialises proj_out: perturb everything
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = MotionAdapter(TINY).eval()
    ours.load_state_dict(ref.state_dict())  # strict: the same names and shapes, buffers included
    return ref, ours


def test_every_motion_module_matches_diffusers():
    ref, ours = _pair()
    frames = 6
    pairs = [(r, o) for rl, ol in zip(ref.down_blocks, ours.down_blocks) for r, o in zip(rl.motion_modules, ol.motion_modules)]
    pairs += [(ref.mid_block.motion_modules[0], ours.mid_block.motion_modules[0])]
    pairs += [(r, o) for rl, ol in zip(ref.up_blocks, ours.up_blocks) for r, o in zip(rl.motion_modules, ol.motion_modules)]
    assert len(pairs) == 2 * 1 + 1 + 2 * 2
    g = torch.Generator().manual_seed(1)
    for r, o in pairs:
        x = torch.randn(2 * frames, r.in_channels, 4, 5, generator=g)
        with torch.no_grad():
            expected = r(x, num_frames=frames)
            got = o(x, frames)
        assert (expected - x).abs().mean() > 1e-3  # the module changes its input
        assert (expected - got).abs().max() <= 1e-4


def test_frames_mix_only_along_time_and_limits_are_clear():
    _, ours = _pair()
    m = ours.down_blocks[0].motion_modules[0]
    x = torch.randn(8, 32, 3, 3)
    with torch.no_grad():
        base = m(x, 4)
        y = x.clone()
        y[0, :, 0, 0] += 1.0  # one pixel of frame 0 of clip 0
        diff = (m(y, 4) - base).abs().sum(dim=1)
    assert diff[:4, 0, 0].min() > 0  # every frame of that clip sees it (temporal attention)
    assert diff[4:].max() == 0  # the other clip does not
    with pytest.raises(UserError, match="frames"):
        m(torch.randn(17, 32, 2, 2), 17)
    with pytest.raises(UserError, match="split"):
        m(torch.randn(7, 32, 2, 2), 4)


def test_released_layout_round_trips_and_loads(tmp_path):
    """Our released-layout state dict goes through diffusers' own AnimateDiff converter to the reference's
    tensors, and loads (through our converter) to a model with the reference's outputs."""
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    from models.video_generation.runway_gen3.convert import adapter_from_state, native_to_released

    ref, ours = _pair()
    released = native_to_released(ours.state_dict())
    assert all(".temporal_transformer." in k for k in released)
    back = convert_animatediff_checkpoint_to_diffusers(released)
    ref_sd = {k: v for k, v in ref.state_dict().items() if "pos_embed" not in k}
    assert set(back) == set(ref_sd) and all(torch.equal(back[k], v) for k, v in ref_sd.items())
    loaded = adapter_from_state(released, heads=4, groups=8)
    assert loaded.config == TINY
    x = torch.randn(8, 64, 3, 3)
    with torch.no_grad():
        assert (loaded.up_blocks[0].motion_modules[1](x, 4) - ref.up_blocks[0].motion_modules[1](x, num_frames=4)
                ).abs().max() <= 1e-4
    # without the pe buffers (diffusers' converter drops them) the table is rebuilt at 32 frames: same prefix
    no_tables = adapter_from_state(back, heads=4, groups=8)
    assert no_tables.config == replace(TINY, motion_max_seq_length=32)
    with torch.no_grad():
        assert (no_tables.up_blocks[0].motion_modules[1](x, 4) - ref.up_blocks[0].motion_modules[1](x, num_frames=4)
                ).abs().max() <= 1e-4


def test_full_size_sd15_adapter_keys_on_meta():
    """The SD 1.5 v2-style adapter (diffusers' default MotionAdapter sizes) on meta: both layouts map onto each
    other, with diffusers' converter, and the config is read back."""
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    from models.video_generation.runway_gen3.convert import native_to_released, read_adapter_config

    with torch.device("meta"):
        ref, ours = RefAdapter(), MotionAdapter()
    ref_sd = ref.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_sd.items()}
    back = convert_animatediff_checkpoint_to_diffusers(native_to_released(ours.state_dict()))
    assert set(back) == {k for k in ref_sd if "pos_embed" not in k}
    assert read_adapter_config(ours.state_dict()) == MotionAdapterConfig()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
