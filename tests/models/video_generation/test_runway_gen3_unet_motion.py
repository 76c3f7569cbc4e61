"""The SD 1.5 UNet with motion modules vs diffusers' UNetMotionModel (from_unet2d + MotionAdapter), tiny config."""
from __future__ import annotations

import pytest
import torch
from diffusers import MotionAdapter as RefAdapter
from diffusers import UNet2DConditionModel, UNetMotionModel

from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_diffusers_to_native
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from models.video_generation.runway_gen3.motion import MotionAdapter, MotionAdapterConfig
from models.video_generation.runway_gen3.unet_motion import MotionUNet
from utils.errors import UserError

UNET = UNetConfig.preset("tiny-sd15")
ADAPTER = MotionAdapterConfig(block_out_channels=UNET.level_channels, motion_layers_per_block=UNET.num_res_blocks,
                              motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=16)


def _perturb(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_parity_with_diffusers_unet_motion_model():
    torch.manual_seed(0)
    unet2d = _perturb(UNet2DConditionModel(**unet_config_to_diffusers(UNET)), 1)
    adapter = _perturb(RefAdapter(block_out_channels=ADAPTER.block_out_channels,
                                  motion_layers_per_block=ADAPTER.motion_layers_per_block,
                                  motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=16), 2)
    ref = UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    unet = SDXLUNet(UNET).eval()
    unet.load_state_dict(unet_diffusers_to_native(unet2d.state_dict(), UNET))
    ours_adapter = MotionAdapter(ADAPTER).eval()
    ours_adapter.load_state_dict(adapter.state_dict())
    ours = MotionUNet(unet, ours_adapter)
    g = torch.Generator().manual_seed(3)
    b, f = 2, 4
    x = torch.randn(b, f, 4, 8, 8, generator=g)
    t = torch.tensor([10.0, 700.0])
    context = torch.randn(b, 5, UNET.context_dim, generator=g)
    with torch.no_grad():
        # diffusers: (B, C, F, H, W) latents, the text given per frame (as AnimateDiffPipeline repeats it)
        expected = ref(x.permute(0, 2, 1, 3, 4), t, context.repeat_interleave(f, 0)).sample.permute(0, 2, 1, 3, 4)
        got = ours(x, t, context)
        image_only = unet(x.reshape(b * f, 4, 8, 8), t.repeat_interleave(f), context.repeat_interleave(f, 0))
    assert (expected - image_only.reshape(b, f, 4, 8, 8)).abs().max() > 1e-2  # the motion modules matter
    assert (expected - got).abs().max() <= 1e-4


def test_an_adapter_for_another_unet_is_one_clear_line():
    with pytest.raises(UserError, match="SD 1.5 vs SDXL"):
        MotionUNet(SDXLUNet(UNET), MotionAdapter(MotionAdapterConfig(block_out_channels=(64, 128, 128),
                                                                     motion_layers_per_block=1,
                                                                     motion_norm_num_groups=8)))


def test_full_size_sd15_unet_takes_the_v2_adapter_and_refuses_sdxl_beta_widths():
    """On meta: SD 1.5's UNet + the released v2 / v3 sizes build a MotionUNet with a module after every block (the
    places of diffusers' UNetMotionModel: 2 per down level, 3 per up level, 1 in the middle); AnimateDiff's SDXL
    beta sizes (3 levels up to 1280) are one line."""
    with torch.device("meta"):
        unet = SDXLUNet(UNetConfig.preset("sd15"))
        ours = MotionUNet(unet, MotionAdapter(MotionAdapterConfig()))
        sdxl_beta = MotionAdapter(MotionAdapterConfig(block_out_channels=(320, 640, 1280), use_motion_mid_block=False))
    placed = [m for m in ours._down if m is not None] + ours._up
    assert len(placed) == 4 * 2 + 4 * 3 and len({id(m) for m in placed}) == len(placed)
    assert [m.proj_in.in_features for m in ours._up] == [1280] * 6 + [640] * 3 + [320] * 3
    with pytest.raises(UserError, match="SD 1.5 vs SDXL"):
        MotionUNet(unet, sdxl_beta)


def test_sdxl_shaped_unet_with_motion_matches_diffusers():
    """AnimateDiff's SDXL beta layout (no middle-block module) on an SDXL-shaped tiny UNet vs UNetMotionModel:
    the vector y (pooled text + size embeddings) conditions every frame (max abs diff <= 1e-4)."""
    ucfg = UNetConfig.preset("tiny")
    torch.manual_seed(0)
    unet2d = _perturb(UNet2DConditionModel(**unet_config_to_diffusers(ucfg)), 1)
    kw = dict(block_out_channels=ucfg.level_channels, motion_layers_per_block=ucfg.num_res_blocks,
              motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=16,
              use_motion_mid_block=False)
    adapter = _perturb(RefAdapter(**kw), 2)
    ref = UNetMotionModel.from_unet2d(unet2d, adapter).eval()
    # from_unet2d (diffusers 0.42) leaves SDXL's add_embedding at its fresh initialisation: copy it over
    ref.add_embedding.load_state_dict(unet2d.add_embedding.state_dict())
    unet = SDXLUNet(ucfg).eval()
    unet.load_state_dict(unet_diffusers_to_native(unet2d.state_dict(), ucfg))
    ours_adapter = MotionAdapter(MotionAdapterConfig(**kw)).eval()
    ours_adapter.load_state_dict(adapter.state_dict())
    ours = MotionUNet(unet, ours_adapter)
    g = torch.Generator().manual_seed(3)
    b, f = 2, 3
    x = torch.randn(b, f, 4, 8, 8, generator=g)
    t = torch.tensor([10.0, 700.0])
    context = torch.randn(b, 5, ucfg.context_dim, generator=g)
    pooled = torch.randn(b, unet2d.config.projection_class_embeddings_input_dim - 6 * unet2d.config.addition_time_embed_dim,
                         generator=g)
    time_ids = torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0]]).repeat(b, 1)
    with torch.no_grad():
        expected = ref(x.permute(0, 2, 1, 3, 4), t, context.repeat_interleave(f, 0),
                       added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample.permute(0, 2, 1, 3, 4)
        y = torch.cat([pooled, ref.add_time_proj(time_ids.flatten()).reshape(b, -1)], dim=1)
        got = ours(x, t, context, y=y)
    assert ours_adapter.mid_block is None
    assert (expected - got).abs().max() <= 1e-4
