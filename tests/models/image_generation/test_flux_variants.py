"""FLUX Fill and Canny/Depth: parity with diffusers' FluxFillPipeline / FluxControlPipeline on tiny
random components, and the torch Canny detector and depth-estimator path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.image_generation.flux import control as ctl
from models.image_generation.flux.pipeline import FluxPipeline
from models.image_generation.flux.sampling import pack_latents

import diffusers

SEQ = 32
SIZE = 64


def _components(folder, in_channels: int, seed: int = 0) -> dict:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

    from models.image_generation.flux import convert as C
    from models.image_generation.flux.model import PRESETS
    from models.image_generation.flux.pipeline import SCHEDULER_DEV
    from tests.helpers.tokenizers import write_clip_tokenizer, write_t5_tokenizer
    from utils.encoders.clip import CLIPTextEncoderConfig
    from utils.encoders.t5 import T5EncoderConfig
    from utils.encoders.vae import VAEConfig
    from utils.encoders.vae_convert import config_to_diffusers

    clip_tok = write_clip_tokenizer(folder / "tokenizer")
    t5_tok = write_t5_tokenizer(folder / "tokenizer_2")
    params = PRESETS["tiny"].with_(in_channels=in_channels)
    torch.manual_seed(seed)
    clip_cfg = CLIPTextEncoderConfig.preset("tiny").with_(hidden_size=params.vec_in_dim, vocab_size=clip_tok.vocab_size)
    t5_cfg = T5EncoderConfig.preset("tiny").with_(d_model=params.context_in_dim, vocab_size=t5_tok.vocab_size)
    return dict(transformer=FluxTransformer2DModel(**C.params_to_diffusers_config(params)),
                text_encoder=CLIPTextModel(clip_cfg.to_transformers()),
                tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
                text_encoder_2=T5EncoderModel(t5_cfg.to_transformers()),
                tokenizer_2=T5Tokenizer.from_pretrained(str(folder / "tokenizer_2")),
                vae=AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny-16").with_(channel_mult=(1, 1, 1, 1)))),
                scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_DEV))


def _photo(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


def _pixels(out) -> np.ndarray:
    return out.pixels.permute(0, 2, 3, 1).numpy()


def test_fill_parity_with_diffusers(tmp_path):
    from diffusers import FluxFillPipeline

    ref = FluxFillPipeline(**_components(tmp_path, 384))
    ref.save_pretrained(tmp_path)
    ours = FluxPipeline.from_pretrained(tmp_path, preset="fill", device="cpu", dtype=torch.float32)
    assert ours.variant == "fill"
    mask = Image.new("L", (SIZE, SIZE))
    mask.paste(255, (8, 16, 40, 56))
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(11))
    expect = ref(prompt="a cat", image=_photo(1), mask_image=mask, height=SIZE, width=SIZE, num_inference_steps=3,
                 guidance_scale=30.0, generator=[torch.Generator().manual_seed(4)], latents=pack_latents(noise),
                 max_sequence_length=SEQ, output_type="np").images
    out = ours("a cat", image=_photo(1), mask=mask, steps=3, seed=4, latents=noise, max_sequence_length=SEQ,
               progress=False)
    assert np.abs(_pixels(out) - expect).max() <= 1e-3


def test_control_parity_with_diffusers(tmp_path):
    from diffusers import FluxControlPipeline

    ref = FluxControlPipeline(**_components(tmp_path, 128))
    ref.save_pretrained(tmp_path)
    ours = FluxPipeline.from_pretrained(tmp_path, preset="depth", device="cpu", dtype=torch.float32)
    assert ours.variant == "depth"
    depth_map = _photo(3)
    noise = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(12))
    expect = ref(prompt="a house", control_image=depth_map, height=SIZE, width=SIZE, num_inference_steps=3,
                 guidance_scale=10.0, generator=[torch.Generator().manual_seed(6)], latents=pack_latents(noise),
                 max_sequence_length=SEQ, output_type="np").images
    out = ours("a house", control=depth_map, steps=3, seed=6, latents=noise, max_sequence_length=SEQ, progress=False)
    assert np.abs(_pixels(out) - expect).max() <= 1e-3


# -- Canny --------------------------------------------------------------------------------------------


def _square(size: int = 32, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    x = torch.full((1, 3, size, size), lo)
    x[..., 8:24, 8:24] = hi
    return x


def test_canny_finds_thin_closed_square_edges():
    edges = ctl.canny_edges(_square())[0, 0]
    assert edges.sum() > 0
    assert edges[:6].sum() == 0 and edges[:, :6].sum() == 0 and edges[12:20, 12:20].sum() == 0  # flat areas
    # a thin (one pixel per row/column) closed outline around the square
    for r in range(10, 22):
        row = edges[r].nonzero().flatten().tolist()
        assert len(row) == 2 and row[0] in (7, 8) and row[1] in (23, 24), (r, row)
    for c in range(10, 22):
        col = edges[:, c].nonzero().flatten().tolist()
        assert len(col) == 2 and col[0] in (7, 8) and col[1] in (23, 24), (c, col)


def test_canny_thresholds_and_hysteresis():
    # a straight step of 40 grey levels: |Sobel| = 4 * 40 = 160 along it (no corners to exceed that)
    img = torch.full((1, 3, 16, 16), -1.0)
    img[..., 8:] = -1.0 + 40 / 127.5
    assert ctl.canny_edges(img, 50, 200).sum() == 0  # nothing above the strong threshold
    edges = ctl.canny_edges(img, 50, 150)[0, 0]
    assert edges.sum() == 16 and edges[:, 7].sum() + edges[:, 8].sum() == 16  # one pixel per row
    # hysteresis: a weak ridge survives only when it touches a strong pixel
    cand = torch.zeros(1, 1, 5, 9)
    cand[0, 0, 2, 1:8] = 100.0
    assert ctl.hysteresis(cand, 50, 200).sum() == 0
    cand[0, 0, 2, 1] = 250.0
    assert ctl.hysteresis(cand, 50, 200).sum() == 7


def test_canny_control_image_range_and_shape():
    out = ctl.canny_control(_square(48))
    assert out.shape == (1, 3, 48, 48)
    assert set(out.unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(Exception, match="low <= high"):
        ctl.canny_edges(_square(), 200, 50)


def test_depth_estimator_path_with_a_tiny_dpt():
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                    fusion_hidden_size=16, head_in_index=-1, is_hybrid=False)
    torch.manual_seed(0)
    model = DPTForDepthEstimation(cfg).eval()
    proc = DPTImageProcessor(size={"height": 32, "width": 32}, do_pad=False)
    depth = ctl.estimate_depth(_square(48), estimator=(proc, model))
    assert depth.shape == (1, 3, 48, 48)
    assert depth.min() >= -1 - 1e-5 and depth.max() <= 1 + 1e-5
    assert torch.isclose(depth.min(), torch.tensor(-1.0)) and torch.isclose(depth.max(), torch.tensor(1.0))
