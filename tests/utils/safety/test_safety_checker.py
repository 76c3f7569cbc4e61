"""The CLIP safety checker against diffusers' StableDiffusionSafetyChecker with the same weights, the
flag rule when an image embedding is set to match a concept, loading the release layout, refusals."""
from __future__ import annotations

import pytest
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from safetensors.torch import save_file
from transformers import CLIPConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling

from utils.errors import SafetyRefusal
from utils.safety import SafetyChecker, SafetyCheckerConfig, clip_preprocess
from utils.safety.safety_checker import release_layout


def tiny_pair(seed: int = 0):
    cfg = SafetyCheckerConfig.preset("tiny")
    torch.manual_seed(seed)
    clip_cfg = CLIPConfig(vision_config=cfg.to_transformers().to_dict(),
                          text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2), projection_dim=cfg.projection_dim)
    ref = StableDiffusionSafetyChecker(clip_cfg).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.randn_like(p) * (0.2 if "vision_model" in name else 1.0))
        ref.concept_embeds_weights.fill_(1.5)  # nothing flagged until a test says so
        ref.special_care_embeds_weights.fill_(1.5)
    ours = SafetyChecker(cfg)
    ours.load_state_dict(ref.state_dict())
    return ref, ours.eval()


class PooledIdentity(torch.nn.Module):
    """A stand-in image tower whose pooled output is the input's first values: the embeddings are chosen."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def forward(self, pixel_values):
        pooled = pixel_values.flatten(1)[:, :self.width]
        return BaseModelOutputWithPooling(last_hidden_state=pooled[:, None], pooler_output=pooled)


def test_flags_match_diffusers_including_the_special_care_adjustment():
    ref, ours = tiny_pair()
    hidden, proj = ours.config.hidden_size, ours.config.projection_dim
    tower = PooledIdentity(hidden)
    ref.vision_model, ours.vision_model = tower, tower
    x = torch.zeros(3, 3, 32, 32)
    for i in range(3):  # three orthogonal embeddings e_0, e_1, e_2
        x.view(3, -1)[i, i] = 1.0
    with torch.no_grad():
        for m in (ref, ours):
            m.visual_projection.weight.copy_(torch.eye(proj, hidden))
            m.concept_embeds_weights.fill_(0.5)
            m.special_care_embeds_weights.fill_(0.5)
            m.special_care_embeds[0] = torch.eye(proj)[0]          # image 0 hits a special-care concept
            m.concept_embeds[4] = torch.eye(proj)[0] + 1.2 * torch.eye(proj)[5]  # cos 0.640 with image 0
            m.concept_embeds_weights[4] = 0.645                    # under by 0.005: over after the +0.01
            m.concept_embeds[7] = torch.eye(proj)[1]               # image 1 matches a concept outright
            m.special_care_embeds[1:] = torch.eye(proj)[9:11]
            m.concept_embeds[torch.tensor([0, 1, 2, 3, 5, 6] + list(range(8, 17)))] = torch.eye(proj)[11:12]
        images = torch.ones(3, 3, 8, 8)
        blacked, theirs = ref(clip_input=x, images=images.clone())
    result = ours.scores(x)
    assert result.flagged == list(theirs) == [True, True, False]
    assert torch.equal(blacked[2], images[2]) and blacked[:2].abs().sum() == 0
    assert abs(result.concept_scores[0, 4].item() - 0.005) < 1e-6  # over only thanks to the adjustment
    assert result.special_scores[0, 0] > 0 and (result.concept_scores[2] <= 0).all()
    with torch.no_grad():
        for m in (ref, ours):
            m.special_care_embeds[0] = torch.eye(proj)[12]         # no special hit: image 0 is now under
        _, theirs = ref(clip_input=x, images=images.clone())
    assert ours.scores(x).flagged == list(theirs) == [False, True, False]


def test_image_embedding_matches_the_reference_tower():
    ref, ours = tiny_pair(1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        theirs = ref.visual_projection(ref.vision_model(x)[1])
    assert (ours.image_embeds(x) - theirs).abs().max().item() < 1e-5


def test_refuse_unsafe_names_the_images_and_loads_the_release_layout(tmp_path):
    ref, _ = tiny_pair(2)
    pixels = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(5))
    pixels[1] = 1 - pixels[1]
    folder = tmp_path / "safety_checker"
    folder.mkdir()
    release = release_layout(ref.state_dict())  # the names of CompVis/stable-diffusion-safety-checker
    assert "vision_model.vision_model.embeddings.patch_embedding.weight" in release
    save_file({k: v.contiguous() for k, v in release.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(ref.config.to_json_string())
    ours = SafetyChecker.from_pretrained(tmp_path, subfolder="safety_checker", device="cpu")
    assert ours.config == SafetyCheckerConfig.preset("tiny")
    emb = ours.image_embeds(clip_preprocess(pixels, 32))
    assert not ours.check(pixels).any
    cos01 = torch.nn.functional.cosine_similarity(emb[0], emb[1], dim=0).item()
    assert 1 - cos01 > 0.001  # room for a threshold between the two images after rounding to 3 decimals
    with torch.no_grad():
        ours.concept_embeds[0] = emb[1]
        ours.concept_embeds_weights[0] = (1 + cos01) / 2  # only image 1's own embedding is that close
    with pytest.raises(SafetyRefusal, match=r"image\(s\) 1 was refused") as err:
        ours.refuse_unsafe(pixels)
    assert err.value.exit_code == 3
    single = SafetyChecker.from_pretrained(folder / "model.safetensors", preset="tiny")  # a bare file: shapes tell
    assert single.config.num_layers == 2 and single.config.image_size == 32


def test_preprocessing_crops_the_centre_to_the_input_size():
    x = torch.zeros(1, 3, 64, 128)
    x[..., 32:96] = 1.0  # a white centre square on black
    out = clip_preprocess(x, 32)
    assert out.shape == (1, 3, 32, 32)
    white = (1 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert torch.allclose(out[0, :, 16, 16], white, atol=1e-3)
