"""The DALL-E 3 stand-in on tiny random parts: the template rewriter, a tiny random causal LM as the rewriter
(offline, end to end), consistency decoding in the fast mode and its seed rule, and the safety wiring
(blocked prompts, blocked rewrites, a flagged image)."""
from __future__ import annotations

import pytest
import torch

from models.image_generation.dalle3.pipeline import DallE3Pipeline
from models.image_generation.dalle3.rewriter import TEMPLATES, CausalLMRewriter, TemplateRewriter
from utils.errors import SafetyRefusal, UserError


@pytest.fixture(scope="module")
def pipe():
    return DallE3Pipeline.from_pretrained(preset="tiny", device="cpu")


def test_template_rewriter_is_deterministic_and_follows_its_documented_template():
    rw = TemplateRewriter()
    assert rw.rewrite("  a red   fox in snow ") == f"A red fox in snow. {TEMPLATES['default']}"
    assert rw.rewrite("a photo of a cat!") == f"A photo of a cat! {TEMPLATES['photo']}"
    assert rw.rewrite("an oil painting of a harbour") == f"An oil painting of a harbour. {TEMPLATES['painting']}"
    assert rw.rewrite("a pencil sketch of a dog").endswith(TEMPLATES["illustration"])
    assert rw.rewrite("a 3d render of a teapot").endswith(TEMPLATES["render"])
    long = " ".join(["word"] * 40)
    assert rw.rewrite(long) == "W" + long[1:] + "."  # already long: tidied only
    assert rw.rewrite("a red fox") == TemplateRewriter().rewrite("a red fox")


def _tiny_causal_lm(folder):
    """A random 2-layer Llama with a word-level tokenizer, saved as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ("a red fox in snow at dawn with soft light warm colours forest river mountain sky clouds the of and "
             "detailed painting photo cat dog sitting on grass bright morning").split()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1,
                      eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    return folder


def test_a_tiny_random_causal_lm_rewrites_the_prompt_end_to_end_offline(pipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _tiny_causal_lm(tmp_path / "lm")
    direct = CausalLMRewriter.from_pretrained(folder, device="cpu")
    expected = direct.rewrite("a red fox in snow")
    assert expected and expected != TemplateRewriter().rewrite("a red fox in snow")
    assert direct.rewrite("a red fox in snow") == expected  # greedy: the same rewrite every time
    out = pipe("a red fox in snow", rewrite_model=folder, seed=0, progress=False)
    assert out.revised_prompts == [expected] and out.prompts == ["a red fox in snow"]
    assert out.pixels.shape == (1, 3, 32, 32)
    with pytest.raises(UserError, match="cannot load the rewrite model"):
        CausalLMRewriter.from_pretrained(tmp_path / "empty-folder-that-is-not-there")


def test_fast_mode_decodes_with_the_consistency_decoder_and_keeps_the_seed_rule(pipe):
    from utils.diffusion.noise import generators

    both = pipe(["a red fox", "a cat"], fast=True, steps=2, seed=3, progress=False)
    alone = pipe("a cat", fast=True, steps=2, seed=4, progress=False)
    assert both.pixels.shape == (2, 3, 32, 32)
    assert torch.allclose(both.pixels[1:], alone.pixels, atol=1e-5)
    # the consistency decoder, fed the SDXL latents in SD scaling with generators seed + i, made the images
    dec, vae = pipe.decoder, pipe.fast.vae
    z = both.latents / vae.config.scaling_factor * dec.config.scaling_factor
    direct = dec.decode_latents(z, generators(3, 2), steps=2)
    assert torch.allclose(both.pixels, ((direct + 1) / 2).clamp(0, 1), atol=1e-5)
    by_vae = pipe(["a red fox", "a cat"], fast=True, steps=2, seed=3, decoder="vae", progress=False)
    assert torch.equal(by_vae.latents, both.latents) and not torch.allclose(by_vae.pixels, both.pixels, atol=1e-3)
    one_step = pipe(["a red fox", "a cat"], fast=True, steps=2, seed=3, decoder_steps=1, progress=False)
    assert not torch.allclose(one_step.pixels, both.pixels, atol=1e-3)
    with pytest.raises(UserError, match="16-channel"):
        pipe("a red fox", decoder="consistency")
    with pytest.raises(UserError, match="--decoder must be one of"):
        pipe("a red fox", decoder="pixel")
    with pytest.raises(UserError, match="1 or 2 steps"):
        pipe("a red fox", fast=True, decoder_steps=3)


def test_blocked_prompts_and_blocked_rewrites_are_refused_before_sampling(pipe, monkeypatch):
    class Shouting:
        def rewrite(self, prompt):
            return prompt + ", nsfw"

    class NotSampled:
        def __call__(self, **kw):
            raise AssertionError("sampled although the prompt was refused")

    monkeypatch.setattr(pipe, "base", NotSampled())
    with pytest.raises(SafetyRefusal, match="blocked") as refused:
        pipe("a NUDE figure", progress=False)
    assert refused.value.exit_code == 3 and "\n" not in str(refused.value)
    with pytest.raises(SafetyRefusal, match="rewritten prompt"):
        pipe("a red fox", rewrite_model=Shouting(), progress=False)


def test_a_flagged_image_is_refused(pipe):
    from utils.safety import clip_preprocess

    out = pipe("a red fox", seed=7, progress=False)
    checker = pipe.safety_checker
    emb = checker.image_embeds(clip_preprocess(out.pixels, checker.config.image_size))[0]
    saved = checker.concept_embeds.data.clone(), checker.concept_embeds_weights.data.clone()
    try:
        with torch.no_grad():
            checker.concept_embeds[0] = emb  # the concept is this very image
            checker.concept_embeds_weights[0] = 0.5
        with pytest.raises(SafetyRefusal, match="safety checker"):
            pipe("a red fox", seed=7, progress=False)
    finally:
        checker.concept_embeds.data.copy_(saved[0])
        checker.concept_embeds_weights.data.copy_(saved[1])
    assert len(pipe("a red fox", seed=7, progress=False)) == 1


def test_fast_mode_loads_the_sdxl_base_and_fuses_the_lcm_lora(tmp_path, monkeypatch):
    """A real preset's first --fast call: the SDXL base from its source, the LCM-LoRA file fused into it."""
    from safetensors.torch import save_file

    from models.image_generation.stable_diffusion.pipeline import SDXLPipeline

    pipe = DallE3Pipeline.tiny()
    pipe.fast = None
    before = SDXLPipeline.tiny().unet.get_submodule("input_blocks.1.1.transformer_blocks.0.attn1.to_q").weight.clone()
    loaded = []

    def tiny_base(source, preset=None, device=None, dtype=None, **kw):
        loaded.append((source, preset))
        return SDXLPipeline.tiny()

    monkeypatch.setattr(SDXLPipeline, "from_pretrained", classmethod(lambda cls, *a, **kw: tiny_base(*a, **kw)))
    name = "input_blocks.1.1.transformer_blocks.0.attn1.to_q"
    g = torch.Generator().manual_seed(0)
    down, up = torch.randn(2, 32, generator=g), torch.randn(32, 2, generator=g)
    key = "lora_unet_" + name.replace(".", "_")  # kohya names, as latent-consistency/lcm-lora-sdxl ships
    save_file({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(2.0)},
              str(tmp_path / "lcm.safetensors"))
    pipe.sources.update(fast="some/sdxl-base", lcm_lora=str(tmp_path / "lcm.safetensors"))
    out = pipe("a red fox", fast=True, seed=0, progress=False)
    assert loaded == [("some/sdxl-base", "sdxl-base")] and out.pixels.shape == (1, 3, 32, 32)
    fused = pipe.fast.unet.get_submodule(name).weight.detach()
    assert torch.allclose(fused - before, up @ down * (2.0 / 2), atol=1e-5)  # scale 1 x alpha / rank
