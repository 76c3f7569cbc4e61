"""LTX-Video sampling (luma/pipeline.py): few-step parity with diffusers' LTXPipeline on the same tiny
random transformer and VAE, same seed and text embeddings, with guidance (0.9 VAE; the 0.9.1 timestep-conditioned decode is not yet equal)."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

from models.video_generation.luma_dream.config import TRANSFORMER_PRESETS
from models.video_generation.luma_dream.convert import diffusers_to_official
from models.video_generation.luma_dream.model import LTXVideoTransformer
from models.video_generation.luma_dream.pipeline import LTXVideoPipeline
from utils.encoders.ltx_vae import LTXVideoVAE, ltx_vae_config
from utils.errors import UserError


def _randomize(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("timestep_conditioning", [False], ids=["0.9"])  # 0.9.1 decode: not yet equal
def test_few_step_parity_with_diffusers(timestep_conditioning):
    tcfg = TRANSFORMER_PRESETS["tiny"]
    # A 0.9.1-style decoder whose levels keep their width (diffusers' reference cannot feed the timestep
    # to a widening residual block), with residual depth-to-space upsampling and injected noise.
    extra = dict(decoder_block_out_channels=(8, 8), decoder_layers_per_block=(1, 2, 1),
                 decoder_inject_noise=(True, True, False), upsample_residual=(True, False), upsample_factor=(2, 1),
                 timestep_conditioning=True) if timestep_conditioning else {}
    vcfg = ltx_vae_config("tiny", **extra)
    ref_t = LTXVideoTransformer3DModel(**tcfg.to_diffusers()).eval()
    ref_v = AutoencoderKLLTXVideo(**vcfg.to_diffusers()).eval()
    _randomize(ref_t, 0)
    _randomize(ref_v, 1)
    sched = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                            base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
    ref = LTXPipeline(scheduler=sched, vae=ref_v, text_encoder=None, tokenizer=None, transformer=ref_t)
    ours_t = LTXVideoTransformer(tcfg).eval()
    ours_t.load_state_dict(diffusers_to_official(ref_t.state_dict()))
    ours_v = LTXVideoVAE(vcfg).eval()
    ours_v.load_state_dict(ref_v.state_dict())
    pipe = LTXVideoPipeline(ours_t, ours_v)
    g = torch.Generator().manual_seed(3)
    emb, neg = torch.randn(1, 6, 16, generator=g), torch.randn(1, 6, 16, generator=g)
    mask = torch.ones(1, 6)
    kw = dict(height=32, width=32, num_frames=5, num_inference_steps=3, guidance_scale=3.0)
    with torch.no_grad():
        want = ref(prompt_embeds=emb, prompt_attention_mask=mask, negative_prompt_embeds=neg,
                   negative_prompt_attention_mask=mask, generator=torch.Generator().manual_seed(11),
                   frame_rate=25, decode_timestep=0.05, decode_noise_scale=0.025, output_type="pt", **kw).frames
    out = pipe(emb, mask, negative_embeds=neg, negative_mask=mask, seed=11, height=32, width=32, num_frames=5,
               steps=3, guidance=3.0, fps=25, decode_timestep=0.05, decode_noise_scale=0.025)
    assert out.pixels.shape == want.shape == (1, 5, 3, 32, 32)
    assert (out.pixels - want).abs().max() <= 1e-3
    assert want.std() > 1e-2
    assert len(out.frames[0]) == 5 and out.frames[0][0].size == (32, 32)


def test_bad_frame_count_is_one_line():
    pipe = LTXVideoPipeline(LTXVideoTransformer(TRANSFORMER_PRESETS["tiny"]), LTXVideoVAE(ltx_vae_config("tiny")))
    with pytest.raises(UserError, match="frames"):
        pipe(torch.zeros(1, 2, 16), torch.ones(1, 2), num_frames=4, height=16, width=16, steps=1, guidance=1.0)
