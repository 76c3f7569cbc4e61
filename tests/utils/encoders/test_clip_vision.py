"""The CLIP image encoder: parity with transformers' CLIPVisionModelWithProjection from a diffusers folder and
with open_clip from the official SVD single-file layout, at two tiny configs; SVD's preprocessing."""
from __future__ import annotations

import pytest
import torch
from open_clip.model import CLIP
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from utils.encoders import clip_vision_convert as cvc
from utils.encoders.clip_vision import CLIP_MEAN, CLIP_STD, CLIPVisionConfig, CLIPVisionEncoder, antialiased_resize
from utils.errors import ConversionError, UserError

TINY = CLIPVisionConfig.preset("tiny")
TINY_WIDE = TINY.with_(hidden_size=48, intermediate_size=96, num_layers=3, num_heads=6, patch_size=16,
                       projection_dim=24)
PREFIX = "conditioner.embedders.0.open_clip.model."


def _open_clip(cfg: CLIPVisionConfig, seed: int = 0) -> CLIP:
    torch.manual_seed(seed)
    vision = dict(image_size=cfg.image_size, layers=cfg.num_layers, width=cfg.hidden_size,
                  head_width=cfg.hidden_size // cfg.num_heads, patch_size=cfg.patch_size,
                  mlp_ratio=cfg.intermediate_size / cfg.hidden_size)
    model = CLIP(embed_dim=cfg.projection_dim, vision_cfg=vision,
                 text_cfg=dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)).eval()
    g = torch.Generator().manual_seed(seed + 1)
    for p in model.parameters():
        p.data += 0.02 * torch.randn(p.shape, generator=g)
    return model


@pytest.mark.parametrize("cfg", [TINY, TINY_WIDE], ids=["tiny", "wide"])
def test_parity_with_transformers_from_a_diffusers_folder(cfg, tmp_path):
    torch.manual_seed(0)
    ref = CLIPVisionModelWithProjection(cfg.to_transformers()).eval()
    ref.save_pretrained(tmp_path / "image_encoder")
    ours = CLIPVisionEncoder.from_pretrained(tmp_path, device="cpu")
    assert ours.config == cfg
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        assert (ours(pixels) - ref(pixel_values=pixels).image_embeds).abs().max() <= 1e-4


@pytest.mark.parametrize("cfg", [TINY, TINY_WIDE], ids=["tiny", "wide"])
def test_parity_with_open_clip_from_the_official_layout(cfg, tmp_path):
    """An SVD file keeps OpenCLIP's model minus its text transformer under conditioner.embedders.0.open_clip.model."""
    ref = _open_clip(cfg)
    official = {PREFIX + k: v.contiguous() for k, v in ref.state_dict().items() if not k.startswith("transformer.")}
    save_file(official, str(tmp_path / "svd.safetensors"))
    if cfg == TINY:
        ours = CLIPVisionEncoder.from_pretrained(tmp_path / "svd.safetensors", device="cpu")
    else:  # a size no preset has: the head count is not in the weights
        with pytest.raises(UserError, match="num_heads"):
            CLIPVisionEncoder.from_pretrained(tmp_path / "svd.safetensors", device="cpu")
        native, _ = cvc.vision_to_native(official, config=cfg)
        ours = CLIPVisionEncoder(cfg, model=CLIPVisionEncoder._build(cfg, native))
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        assert (ours(pixels) - ref.encode_image(pixels)).abs().max() <= 1e-4


def test_open_clip_layout_round_trips():
    ref = _open_clip(TINY)
    visual = {k: v for k, v in ref.state_dict().items() if k.startswith("visual.")}
    native = cvc.open_clip_visual_to_hf(visual)
    back = cvc.hf_visual_to_open_clip(native)
    assert set(back) == set(visual) and all(torch.equal(back[k], visual[k]) for k in visual)
    with pytest.raises(ConversionError, match="visual.attn_pool"):
        cvc.open_clip_visual_to_hf({**visual, "visual.attn_pool.weight": torch.zeros(1)})


def test_preprocessing_matches_diffusers_svd_pipeline():
    """SVD's image conditioning: anti-aliased resize in [-1, 1] to 224, then CLIP's normalisation (diffusers'
    `_resize_with_antialiasing` and CLIPImageProcessor)."""
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    enc = CLIPVisionEncoder(TINY)
    images = torch.rand(2, 3, 96, 160) * 2 - 1
    processor = CLIPImageProcessor(image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
    expected = processor(images=(_resize_with_antialiasing(images, (224, 224)) + 1) / 2, do_normalize=True,
                         do_center_crop=False, do_resize=False, do_rescale=False, return_tensors="pt").pixel_values
    assert (enc.preprocess(images) - expected).abs().max() <= 1e-5
    for shape in ((1, 3, 288, 512), (1, 3, 100, 300), (1, 3, 32, 40)):
        x = torch.rand(shape) * 2 - 1
        assert (antialiased_resize(x, (224, 224)) - _resize_with_antialiasing(x, (224, 224))).abs().max() <= 1e-5


def test_full_size_vit_h_keys_on_meta():
    """ViT-H/14 as SVD ships it (open_clip's model, its text transformer deleted) and as diffusers' image_encoder/
    holds it map onto the same native tensors."""
    import open_clip

    cfg = CLIPVisionConfig.preset("vit-h-14")
    with torch.device("meta"):
        clip = open_clip.create_model("ViT-H-14", pretrained=None, device="meta")
        ref = CLIPVisionModelWithProjection(cfg.to_transformers())
    official = {PREFIX + k: v for k, v in clip.state_dict().items() if not k.startswith("transformer.")}
    native, found = cvc.vision_to_native(official)
    assert found == cfg
    ref_sd = cvc.hf_vision_from_checkpoint(ref.state_dict())
    assert {k: v.shape for k, v in native.items()} == {k: v.shape for k, v in ref_sd.items()}
