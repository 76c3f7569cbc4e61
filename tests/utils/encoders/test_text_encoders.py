"""CLIP-L, OpenCLIP bigG and T5 text encoders: parity with transformers and open_clip, real layouts."""
from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from helpers.tokenizers import write_clip_tokenizer, write_t5_tokenizer
from utils.encoders import convert
from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
from utils.encoders.text import PromptTruncatedWarning
from utils.errors import ConversionError

import transformers
PROMPTS = ["a photograph of an astronaut riding a horse", "a red fox in a snowy forest, watercolor"]


def _contig(sd):
    return {k: v.contiguous() for k, v in sd.items()}


def _clip_reference(preset: str, seed: int = 0):
    cfg = CLIPTextEncoderConfig.preset(preset)
    torch.manual_seed(seed)
    cls = transformers.CLIPTextModelWithProjection if cfg.with_projection else transformers.CLIPTextModel
    return cfg, cls(cfg.to_transformers()).eval()


@pytest.mark.parametrize("preset", ["tiny", "tiny-bigg"])
def test_clip_parity_from_diffusers_folder(preset, tmp_path):
    cfg, ref = _clip_reference(preset)
    sub = "text_encoder" if preset == "tiny" else "text_encoder_2"
    ref.save_pretrained(tmp_path / sub)
    write_clip_tokenizer(tmp_path / sub.replace("text_encoder", "tokenizer"),
                         pad_token="<|endoftext|>" if preset == "tiny" else "!")
    enc = CLIPTextEncoder.from_pretrained(tmp_path, subfolder=sub, device="cpu")
    assert enc.config.with_projection == cfg.with_projection and enc.tokenizer is not None
    out = enc.encode(PROMPTS)
    ids = enc.tokenize(PROMPTS)["input_ids"]
    assert ids.shape == (2, 77) and (ids[:, 0] == 998).all()
    with torch.inference_mode():
        theirs = ref(input_ids=ids, output_hidden_states=True)
    assert (out.last_hidden_state - theirs.last_hidden_state).abs().max() <= 1e-4
    assert (out.penultimate - theirs.hidden_states[-2]).abs().max() <= 1e-4
    if cfg.with_projection:
        assert (out.text_embeds - theirs.text_embeds).abs().max() <= 1e-4
    else:
        assert (out.pooled - theirs.pooler_output).abs().max() <= 1e-4


def test_clip_from_pipeline_root_picks_encoder_by_preset(tmp_path):
    _, ref_l = _clip_reference("tiny")
    _, ref_g = _clip_reference("tiny-bigg")
    ref_l.save_pretrained(tmp_path / "text_encoder")
    ref_g.save_pretrained(tmp_path / "text_encoder_2")
    enc = CLIPTextEncoder.from_pretrained(tmp_path, preset="tiny-bigg", tokenizer=False)
    assert enc.config.hidden_size == 40 and enc.config.with_projection and enc.tokenizer is None


def test_clip_single_file_hf_layout_with_prefix(tmp_path):
    cfg, ref = _clip_reference("tiny")
    sd = {f"conditioner.embedders.0.transformer.{k}": v for k, v in ref.state_dict().items()}
    sd["model.diffusion_model.out.0.weight"] = torch.zeros(3)
    save_file(_contig(sd), str(tmp_path / "sdxl.safetensors"))
    tok = write_clip_tokenizer(tmp_path / "tok").folder
    enc = CLIPTextEncoder.from_pretrained(tmp_path / "sdxl.safetensors", preset="tiny", tokenizer=tok)
    ids = enc.tokenize(PROMPTS)["input_ids"]
    with torch.inference_mode():
        assert (enc(ids).pooled - ref(input_ids=ids).pooler_output).abs().max() <= 1e-4


def _open_clip_text_model(cfg: CLIPTextEncoderConfig, seed: int = 0):
    import open_clip
    torch.manual_seed(seed)
    text_cfg = dict(context_length=cfg.max_length, vocab_size=cfg.vocab_size, width=cfg.hidden_size,
                    heads=cfg.num_heads, layers=cfg.num_layers)
    vision_cfg = dict(image_size=32, patch_size=16, width=32, layers=1, head_width=16)
    model = open_clip.CLIP(embed_dim=cfg.projection_dim, vision_cfg=vision_cfg, text_cfg=text_cfg).eval()
    with torch.no_grad():  # open_clip initialises some tensors to zero or one: make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _open_clip_penultimate(model, ids: torch.Tensor) -> torch.Tensor:
    """SDXL's conditioning: the output of all but the last residual block (no final norm)."""
    x = model.token_embedding(ids) + model.positional_embedding
    mask = model.attn_mask
    for block in model.transformer.resblocks[:-1]:
        x = block(x, attn_mask=mask)
    return x


def test_open_clip_bigg_layout_parity(tmp_path):
    cfg = CLIPTextEncoderConfig.preset("tiny-bigg")
    oc = _open_clip_text_model(cfg)
    # as it sits inside SDXL's single file
    sd = {f"conditioner.embedders.1.model.{k}": v for k, v in oc.state_dict().items()}
    save_file(_contig(sd), str(tmp_path / "sd_xl.safetensors"))
    tok = write_clip_tokenizer(tmp_path / "tok", pad_token="!").folder
    enc = CLIPTextEncoder.from_pretrained(tmp_path / "sd_xl.safetensors", preset="tiny-bigg", tokenizer=tok)
    ids = enc.tokenize(PROMPTS)["input_ids"]
    assert (ids[:, -1] == 0).all()  # padded with '!' as SDXL's tokenizer_2 does
    with torch.inference_mode():
        ours = enc(ids)
        pooled = oc.encode_text(ids, normalize=False)
        penultimate = _open_clip_penultimate(oc, ids)
    assert (ours.text_embeds - pooled).abs().max() <= 1e-4
    assert (ours.penultimate - penultimate).abs().max() <= 1e-4


def test_open_clip_converter_reports_unknown_keys():
    cfg = CLIPTextEncoderConfig.preset("tiny-bigg")
    sd = dict(_open_clip_text_model(cfg).state_dict())
    sd["transformer.resblocks.0.attn.extra_weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="extra_weight"):
        convert.open_clip_to_hf(sd)


def test_prompt_truncation_warns_with_count(tmp_path):
    _, ref = _clip_reference("tiny")
    tok = write_clip_tokenizer(tmp_path / "tok").folder
    enc = CLIPTextEncoder(CLIPTextEncoderConfig.preset("tiny"), tokenizer=transformers.CLIPTokenizer.from_pretrained(str(tok)),
                          model=ref)
    long_prompt = " ".join(["horse"] * 100)  # 100 words + bos + eos = 102 tokens
    with pytest.warns(PromptTruncatedWarning, match="25 tokens dropped"):
        ids = enc.tokenize([long_prompt, "a fox"])["input_ids"]
    assert ids.shape == (2, 77) and ids[0, -1] == 999
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.tokenize("a short prompt")


@pytest.mark.parametrize("fmt", ["spiece", "json"])
def test_t5_parity_from_diffusers_folder(fmt, tmp_path):
    cfg = T5EncoderConfig.preset("tiny")
    torch.manual_seed(0)
    ref = transformers.T5EncoderModel(cfg.to_transformers()).eval()
    ref.save_pretrained(tmp_path / "text_encoder_3")
    info = write_t5_tokenizer(tmp_path / "tokenizer_3", fmt=fmt)
    assert info.vocab_size <= cfg.vocab_size
    enc = T5TextEncoder.from_pretrained(tmp_path, device="cpu", max_length=24)
    with pytest.warns(PromptTruncatedWarning, match="dropped"):
        out = enc.encode(PROMPTS + [" ".join(["forest"] * 40)])
    ids = out.input_ids
    assert ids.shape == (3, 24) and (ids[0] == 1).sum() == 1  # one </s>, then padding
    with torch.inference_mode():
        theirs = ref(input_ids=ids).last_hidden_state
    assert (out.last_hidden_state - theirs).abs().max() <= 1e-4
    assert enc.model.encoder.embed_tokens.weight is enc.model.shared.weight


def test_t5_single_file_layouts(tmp_path):
    cfg = T5EncoderConfig.preset("tiny")
    torch.manual_seed(1)
    ref = transformers.T5EncoderModel(cfg.to_transformers()).eval()
    sd = {k: v for k, v in ref.state_dict().items() if k != "encoder.embed_tokens.weight"}  # as t5xxl_fp16 ships
    save_file(_contig(sd), str(tmp_path / "t5xxl_fp16.safetensors"))
    sd3 = {f"text_encoders.t5xxl.transformer.{k}": v for k, v in sd.items()}
    sd3["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"] = torch.ones(4)
    save_file(_contig(sd3), str(tmp_path / "sd3_medium_incl_clips_t5xxlfp16.safetensors"))
    ids = torch.randint(3, 100, (2, 10))
    with torch.inference_mode():
        want = ref(input_ids=ids).last_hidden_state
        for name in ("t5xxl_fp16.safetensors", "sd3_medium_incl_clips_t5xxlfp16.safetensors"):
            enc = T5TextEncoder.from_pretrained(tmp_path / name, preset="tiny", tokenizer=False)
            assert (enc(ids).last_hidden_state - want).abs().max() <= 1e-4


def test_full_size_text_encoders_on_meta():
    """Real-size CLIP-L, bigG (via the OpenCLIP layout) and T5-XXL load on meta with every key assigned."""
    for preset in ("clip-l", "bigg"):
        cfg = CLIPTextEncoderConfig.preset(preset)
        cls = transformers.CLIPTextModelWithProjection if cfg.with_projection else transformers.CLIPTextModel
        with torch.device("meta"):
            ref = cls(cfg.to_transformers())
        model = CLIPTextEncoder._build(cfg, dict(ref.state_dict()))
        assert not any(b.is_meta for b in model.buffers())
    # bigG as SDXL's single file names it: build the OpenCLIP layout of the official sizes on meta
    cfg = CLIPTextEncoderConfig.preset("bigg")
    w, layers = cfg.hidden_size, cfg.num_layers
    oc = {"token_embedding.weight": (cfg.vocab_size, w), "positional_embedding": (77, w),
          "ln_final.weight": (w,), "ln_final.bias": (w,), "text_projection": (w, cfg.projection_dim)}
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        oc.update({b + "ln_1.weight": (w,), b + "ln_1.bias": (w,), b + "ln_2.weight": (w,), b + "ln_2.bias": (w,),
                   b + "attn.in_proj_weight": (3 * w, w), b + "attn.in_proj_bias": (3 * w,),
                   b + "attn.out_proj.weight": (w, w), b + "attn.out_proj.bias": (w,),
                   b + "mlp.c_fc.weight": (4 * w, w), b + "mlp.c_fc.bias": (4 * w,),
                   b + "mlp.c_proj.weight": (w, 4 * w), b + "mlp.c_proj.bias": (w,)})
    sdxl = {f"conditioner.embedders.1.model.{k}": torch.empty(s, device="meta") for k, s in oc.items()}
    native, found = convert.clip_to_native(sdxl, width=1280)
    assert found.layout == "open_clip" and found.layers == 32
    with torch.device("meta"):
        ref = transformers.CLIPTextModelWithProjection(cfg.to_transformers())
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in native.items()} == want
    cfg = T5EncoderConfig.preset("t5-xxl")
    with torch.device("meta"):
        ref = transformers.T5EncoderModel(cfg.to_transformers())
    sd = {k: v for k, v in ref.state_dict().items() if k != "encoder.embed_tokens.weight"}
    native, found = convert.t5_to_native(sd)
    assert found.layers == 24
    model = T5TextEncoder._build(cfg, native)
    assert model.shared.weight.shape == (32128, 4096)
