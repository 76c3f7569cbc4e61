"""LoRA files from the wild in FLUX, SDXL and SD3: parity with diffusers' `load_lora_weights` (the same file
into diffusers' model and ours gives the same output, max abs diff <= 1e-4 in float32), the kohya, BFL,
XLabs and diffusers formats with their real key names, stacking and scales, fuse/unfuse, saving, and the
one-line refusals."""
from __future__ import annotations

import copy
import types

import pytest
import torch
from diffusers import SD3Transformer2DModel, UNet2DConditionModel
from diffusers.loaders.lora_pipeline import (FluxLoraLoaderMixin, SD3LoraLoaderMixin,
                                             StableDiffusionXLLoraLoaderMixin)

from models.image_generation.flux import FluxTransformer
from models.image_generation.flux import convert as FC
from models.image_generation.flux.lora import lora_components as flux_components
from models.image_generation.stable_diffusion.conditioning import sdxl_vector
from models.image_generation.stable_diffusion.convert_mmdit import mmdit_config_to_diffusers, mmdit_diffusers_to_native
from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers, unet_diffusers_to_native
from models.image_generation.stable_diffusion.lora import sd3_components, sdxl_components
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.diffusion.lora import layers as L
from utils.diffusion.lora.formats import read_lora_file, write_lora_file
from utils.diffusion.lora.loader import fuse_lora, load_lora, set_lora_scale, unfuse_lora, unload_lora
from utils.diffusion.lora.save import save_adapter
from utils.errors import UserError
from utils.nn import grid_ids

TOL = 1e-4


def _stub(mixin, **parts):
    """The smallest object diffusers' `load_lora_weights` runs on: the mixin and its components."""
    cls = type("Stub", (mixin,), {"hf_device_map": None, "components": property(lambda self: parts)})
    obj = cls()
    obj.__dict__.update(parts)
    return obj


def _pipe(components_fn, **parts):
    """Our side: the pipeline attributes that lora.py reads, with the pipeline base's LoRA methods."""
    pipe = types.SimpleNamespace(spec=None, offload=None, **parts)
    pipe.lora_components = lambda: components_fn(pipe)
    return pipe


def _rand(shape, g, s=0.1):
    return torch.randn(*shape, generator=g) * s


# -- FLUX -----------------------------------------------------------------------------------------------

FLUX_P = FC.params_from_diffusers_config(dict(in_channels=64, num_layers=2, num_single_layers=2,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
                                              pooled_projection_dim=16, guidance_embeds=True,
                                              axes_dims_rope=(4, 6, 6)))


def _flux_pair():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    ref = FluxTransformer2DModel(**FC.params_to_diffusers_config(FLUX_P)).eval()
    sd = {k: v + 0.02 * torch.randn_like(v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours = FluxTransformer(FLUX_P).eval()
    ours.load_state_dict(FC.diffusers_to_native(sd))
    return ref, ours


def _flux_inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    p = FLUX_P
    return dict(img=torch.randn(2, 12, 64, generator=g), img_ids=grid_ids(3, 4), txt=torch.randn(2, 5, 24, generator=g),
                txt_ids=torch.zeros(5, 3), t=torch.tensor([0.3, 0.9]), y=torch.randn(2, p.vec_in_dim, generator=g),
                g=torch.full((2,), 3.5))


def _run_flux_ref(ref, x):
    with torch.no_grad():
        return ref(hidden_states=x["img"], encoder_hidden_states=x["txt"], pooled_projections=x["y"],
                   timestep=x["t"], img_ids=x["img_ids"], txt_ids=x["txt_ids"], guidance=x["g"]).sample


def _run_flux(ours, x):
    with torch.no_grad():
        return ours(x["img"], x["img_ids"], x["txt"], x["txt_ids"], x["t"], x["y"], x["g"])


def _flux_diffusers_file(ref, g, rank=4):
    sd = {}
    for name, m in ref.named_modules():
        if isinstance(m, torch.nn.Linear) and any(s in name for s in ("attn.", "ff", "proj_mlp", "norm_out", "proj_out",
                                                                        "norm1", "norm.linear", "x_embedder")):
            sd[f"transformer.{name}.lora_A.weight"] = _rand((rank, m.in_features), g)
            sd[f"transformer.{name}.lora_B.weight"] = _rand((m.out_features, rank), g)
    return sd


def test_flux_diffusers_format_matches_diffusers():
    ref, ours = _flux_pair()
    x = _flux_inputs()
    base = _run_flux(ours, x)
    sd = _flux_diffusers_file(ref, torch.Generator().manual_seed(2))
    _stub(FluxLoraLoaderMixin, transformer=ref, text_encoder=None).load_lora_weights(dict(sd))
    pipe = _pipe(flux_components, transformer=ours, clip=None, t5=None)
    load_lora(pipe, "ai_toolkit.safetensors", tensors=sd, metadata={})
    got, want = _run_flux(ours, x), _run_flux_ref(ref, x)
    assert (got - base).abs().max() > 0.05  # the LoRA changes the output...
    assert (got - want).abs().max() <= TOL  # ...exactly as diffusers applies it


def _kohya_flux_file(g, rank=4, alpha=2.0):
    """sd-scripts' FLUX LoRA keys (official names, underscored). Left out, because diffusers' kohya reader cannot
    take them at this size or drops them: the single blocks' linear1 (it hard-codes the full-size 3072/12288
    split; ours follows the model, tested below), and img_in / final_layer (it maps them without the
    'transformer.' prefix, so they never load; ours loads them, see the diffusers-format test)."""
    h, mlp = FLUX_P.hidden_size, int(FLUX_P.hidden_size * FLUX_P.mlp_ratio)
    shapes = {}
    for i in range(FLUX_P.depth):
        for s in ("img", "txt"):
            shapes[f"double_blocks_{i}_{s}_attn_qkv"] = (h, 3 * h)
            shapes[f"double_blocks_{i}_{s}_attn_proj"] = (h, h)
            shapes[f"double_blocks_{i}_{s}_mlp_0"] = (h, mlp)
            shapes[f"double_blocks_{i}_{s}_mlp_2"] = (mlp, h)
            shapes[f"double_blocks_{i}_{s}_mod_lin"] = (h, 6 * h)
    for i in range(FLUX_P.depth_single_blocks):
        shapes[f"single_blocks_{i}_linear2"] = (h + mlp, h)
        shapes[f"single_blocks_{i}_modulation_lin"] = (h, 3 * h)
    sd = {}
    for name, (n_in, n_out) in shapes.items():
        sd[f"lora_unet_{name}.lora_down.weight"] = _rand((rank, n_in), g)
        sd[f"lora_unet_{name}.lora_up.weight"] = _rand((n_out, rank), g)
        sd[f"lora_unet_{name}.alpha"] = torch.tensor(alpha)
    return sd


def test_flux_kohya_format_matches_diffusers_and_bfl_names_load_the_same():
    ref, ours = _flux_pair()
    x = _flux_inputs()
    sd = _kohya_flux_file(torch.Generator().manual_seed(3))
    _stub(FluxLoraLoaderMixin, transformer=ref, text_encoder=None).load_lora_weights(dict(sd))
    pipe = _pipe(flux_components, transformer=ours, clip=None, t5=None)
    load_lora(pipe, "kohya.safetensors", tensors=dict(sd), metadata={})
    kohya = _run_flux(ours, x)
    assert (kohya - _run_flux_ref(ref, x)).abs().max() <= TOL
    # The same pairs under BFL's dotted official names (lora_A/lora_B, ComfyUI's diffusion_model. prefix).
    unload_lora(pipe)
    bfl = {}
    for key, v in sd.items():
        name, _, kind = key[len("lora_unet_"):].partition(".")
        dotted = next(n for n in ours.state_dict() if n.rsplit(".", 1)[0].replace(".", "_") == name).rsplit(".", 1)[0]
        kind = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight"}.get(kind, kind)
        bfl[f"diffusion_model.{dotted}.{kind}"] = v
    load_lora(pipe, "bfl.safetensors", tensors=bfl, metadata={})
    assert torch.equal(_run_flux(ours, x), kohya)


def test_flux_xlabs_format_matches_diffusers():
    ref, ours = _flux_pair()
    x = _flux_inputs()
    g, h, r = torch.Generator().manual_seed(4), FLUX_P.hidden_size, 4
    sd = {}
    for i in range(FLUX_P.depth):
        for n in (1, 2):
            for kind, out in (("qkv", 3 * h), ("proj", h)):
                sd[f"double_blocks.{i}.processor.{kind}_lora{n}.down.weight"] = _rand((r, h), g)
                sd[f"double_blocks.{i}.processor.{kind}_lora{n}.up.weight"] = _rand((out, r), g)
    for i in range(FLUX_P.depth_single_blocks):
        sd[f"single_blocks.{i}.processor.qkv_lora.down.weight"] = _rand((r, h), g)
        sd[f"single_blocks.{i}.processor.qkv_lora.up.weight"] = _rand((3 * h, r), g)
        sd[f"single_blocks.{i}.processor.proj_lora.down.weight"] = _rand((r, h + 4 * h), g)
        sd[f"single_blocks.{i}.processor.proj_lora.up.weight"] = _rand((h, r), g)
    _stub(FluxLoraLoaderMixin, transformer=ref, text_encoder=None).load_lora_weights(dict(sd))
    pipe = _pipe(flux_components, transformer=ours, clip=None, t5=None)
    load_lora(pipe, "xlabs.safetensors", tensors=dict(sd), metadata={})
    assert (_run_flux(ours, x) - _run_flux_ref(ref, x)).abs().max() <= TOL


def test_flux_single_block_linear1_split_follows_the_model():
    """kohya's fused linear1 update equals diffusers' to_q/to_k/to_v/proj_mlp pairs holding its row blocks."""
    _, ours = _flux_pair()
    x = _flux_inputs()
    g, h, r = torch.Generator().manual_seed(5), FLUX_P.hidden_size, 3
    down, up = _rand((r, h), g), _rand((3 * h + 4 * h, r), g)
    pipe = _pipe(flux_components, transformer=ours, clip=None, t5=None)
    load_lora(pipe, "a", tensors={"lora_unet_single_blocks_1_linear1.lora_down.weight": down,
                                  "lora_unet_single_blocks_1_linear1.lora_up.weight": up,
                                  "lora_unet_single_blocks_1_linear1.alpha": torch.tensor(1.5)}, metadata={})
    fused = _run_flux(ours, x)
    unload_lora(pipe)
    parts = dict(zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), up.split([h, h, h, 4 * h])))
    sd = {}
    for name, rows in parts.items():
        sd[f"transformer.single_transformer_blocks.1.{name}.lora_A.weight"] = down
        sd[f"transformer.single_transformer_blocks.1.{name}.lora_B.weight"] = rows * (1.5 / r)
    load_lora(pipe, "b", tensors=sd, metadata={})
    assert (_run_flux(ours, x) - fused).abs().max() <= 1e-6


def test_flux_clip_lora_matches_diffusers_text_encoder():
    from models.image_generation.flux.pipeline import FluxPipeline

    pipe = FluxPipeline.tiny()
    ref_te = copy.deepcopy(pipe.clip.model)
    g, sd = torch.Generator().manual_seed(6), {}
    for name, m in ref_te.named_modules():
        if isinstance(m, torch.nn.Linear) and "self_attn" in name:
            key = "lora_te1_" + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"] = _rand((2, m.in_features), g)
            sd[f"{key}.lora_up.weight"] = _rand((m.out_features, 2), g)
            sd[f"{key}.alpha"] = torch.tensor(1.0)
    # diffusers' FLUX reader takes kohya files with transformer keys only; the text encoder's share goes in
    # through diffusers' kohya converter and text-encoder loader (what load_lora_weights calls for SD files)
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_lora_to_diffusers

    converted, alphas = _convert_non_diffusers_lora_to_diffusers(dict(sd))
    FluxLoraLoaderMixin.load_lora_into_text_encoder(converted, alphas, ref_te, prefix="text_encoder")
    ids = pipe.clip.tokenize(["a red square"])["input_ids"]
    pipe.load_lora(_save(sd), 1.0)
    with torch.no_grad():
        want = ref_te(input_ids=ids).last_hidden_state
        got = pipe.clip(ids).last_hidden_state
    assert (got - want).abs().max() <= TOL


_SAVED: list = []


def _save(sd, metadata=None):
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="lora_test_"))
    _SAVED.append(folder)
    return str(write_lora_file(folder / "file.safetensors", sd, metadata))


# -- SDXL -----------------------------------------------------------------------------------------------

SDXL_CFG = UNetConfig.preset("tiny").with_(channel_mult=(1, 2, 2), transformer_depth=(0, 1, 2),
                                           transformer_depth_middle=2)


def _sdxl_pair():
    torch.manual_seed(0)
    ref = UNet2DConditionModel(**unet_config_to_diffusers(SDXL_CFG)).eval()
    sd = {k: v + 0.02 * torch.randn_like(v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours = SDXLUNet(SDXL_CFG).eval()
    ours.load_state_dict(unet_diffusers_to_native(sd, SDXL_CFG))
    return ref, ours


def _sdxl_inputs():
    g = torch.Generator().manual_seed(1)
    cfg = SDXL_CFG
    x, t = torch.randn(2, 4, 16, 16, generator=g), torch.tensor([3.0, 801.0])
    context = torch.randn(2, 7, cfg.context_dim, generator=g)
    pooled = torch.randn(2, cfg.adm_in_channels - 6 * cfg.addition_time_embed_dim, generator=g)
    ids = torch.tensor([[128.0, 96.0, 0.0, 8.0, 128.0, 128.0], [64.0, 64.0, 4.0, 0.0, 128.0, 96.0]])
    return x, t, context, pooled, ids


def _run_sdxl(ref, ours, inputs):
    x, t, context, pooled, ids = inputs
    with torch.no_grad():
        want = ref(x, t, context, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        got = ours(x, t, context, sdxl_vector(pooled, ids, SDXL_CFG.addition_time_embed_dim))
    return got, want


def _sdxl_pipe(ours):
    from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline

    tiny = SDXLPipeline.tiny()
    return _pipe(sdxl_components, unet=ours, text_encoders=tiny.text_encoders)


def test_sdxl_kohya_format_matches_diffusers():
    """sd-scripts' SDXL keys: the official (sgm) UNet names underscored, `lora_te1_` / `lora_te2_` encoders."""
    ref, ours = _sdxl_pair()
    pipe = _sdxl_pipe(ours)
    g, sd = torch.Generator().manual_seed(7), {}
    for name, m in ours.named_modules():
        if isinstance(m, torch.nn.Linear) and any(s in name for s in ("attn1", "attn2", "ff.net", "proj_in", "proj_out")):
            key = "lora_unet_" + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"] = _rand((4, m.in_features), g)
            sd[f"{key}.lora_up.weight"] = _rand((m.out_features, 4), g)
            sd[f"{key}.alpha"] = torch.tensor(8.0)
    te = {}
    for i, enc in enumerate(pipe.text_encoders):
        for name, m in enc.model.named_modules():
            if isinstance(m, torch.nn.Linear) and ("self_attn" in name or "mlp" in name):
                key = f"lora_te{i + 1}_" + name.replace(".", "_")
                te[f"{key}.lora_down.weight"] = _rand((2, m.in_features), g)
                te[f"{key}.lora_up.weight"] = _rand((m.out_features, 2), g)
                te[f"{key}.alpha"] = torch.tensor(1.0)
    ref_te = [copy.deepcopy(e.model) for e in pipe.text_encoders]
    stub = _stub(StableDiffusionXLLoraLoaderMixin, unet=ref, text_encoder=ref_te[0], text_encoder_2=ref_te[1])
    stub.load_lora_weights({**sd, **te})
    load_lora(pipe, _save({**sd, **te}), 0.7)
    stub.set_adapters(stub.get_active_adapters(), [0.7])
    got, want = _run_sdxl(ref, ours, _sdxl_inputs())
    assert (got - want).abs().max() <= TOL
    ids = pipe.text_encoders[1].tokenize(["a blue circle"])["input_ids"]
    with torch.no_grad():
        for enc, r in zip(pipe.text_encoders, ref_te):
            a = enc(ids).hidden_states[-2]
            b = r(input_ids=ids, output_hidden_states=True).hidden_states[-2]
            assert (a - b).abs().max() <= TOL


def test_sdxl_trained_lora_saved_in_diffusers_format_loads_into_diffusers(tmp_path):
    """An adapter made here (as training makes it), saved in the diffusers format with rank and alpha in the
    header, gives diffusers' UNet the same output as ours; the kohya save loads back into ours identically."""
    ref, ours = _sdxl_pair()
    pipe = _sdxl_pipe(ours)
    from models.image_generation.stable_diffusion.lora import unet_targets

    targets = unet_targets(ours)
    torch.manual_seed(3)
    L.inject(ours, {n: (4, 2.0) for n in targets}, "trained", init="gaussian")
    for p in L.lora_parameters(ours, "trained"):  # as after some training: B no longer zero
        p.data.normal_(0, 0.2)
    L.activate(ours, {"trained": 1.0})
    trained, _ = _run_sdxl(ref, ours, _sdxl_inputs())
    path = save_adapter(pipe.lora_components(), "trained", tmp_path / "pytorch_lora_weights.safetensors")
    kohya = save_adapter(pipe.lora_components(), "trained", tmp_path / "kohya.safetensors", fmt="kohya")
    _stub(StableDiffusionXLLoraLoaderMixin, unet=ref, text_encoder=None, text_encoder_2=None).load_lora_weights(
        str(tmp_path), weight_name=path.name)
    _, want = _run_sdxl(ref, ours, _sdxl_inputs())
    assert (trained - want).abs().max() <= TOL
    L.unload(ours)
    assert any(k.endswith("alpha") for k in read_lora_file(kohya)[0])
    load_lora(pipe, str(kohya))
    got, _ = _run_sdxl(ref, ours, _sdxl_inputs())
    assert (got - trained).abs().max() <= 1e-5


# -- SD3 ------------------------------------------------------------------------------------------------

def test_sd3_diffusers_format_matches_diffusers():
    cfg = MMDiTConfig.preset("tiny")
    torch.manual_seed(0)
    ref = SD3Transformer2DModel(**mmdit_config_to_diffusers(cfg)).eval()
    sd0 = {k: v + 0.02 * torch.randn_like(v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd0)
    ours = MMDiT(cfg).eval()
    ours.load_state_dict(mmdit_diffusers_to_native(sd0))
    g, sd = torch.Generator().manual_seed(8), {}
    for name, m in ref.named_modules():
        if isinstance(m, torch.nn.Linear) and any(s in name for s in ("attn", "ff", "norm1", "norm_out", "proj_out")):
            sd[f"transformer.{name}.lora_A.weight"] = _rand((3, m.in_features), g)
            sd[f"transformer.{name}.lora_B.weight"] = _rand((m.out_features, 3), g)
    # diffusers' header: rank 3, alpha 6 (scale 2)
    meta = {"transformer.r": 3, "transformer.lora_alpha": 6, "transformer.target_modules":
            sorted({k.rsplit(".lora_", 1)[0][len("transformer."):] for k in sd})}
    path = _save(sd, meta)
    _stub(SD3LoraLoaderMixin, transformer=ref, text_encoder=None, text_encoder_2=None).load_lora_weights(path)
    pipe = _pipe(sd3_components, transformer=ours, clip_l=None, clip_g=None, t5=None)
    load_lora(pipe, path)
    gx = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 8, 8, generator=gx)
    t, ctx, y = torch.tensor([12.5, 987.0]), torch.randn(2, 9, cfg.context_in_dim, generator=gx), \
        torch.randn(2, cfg.adm_in_channels, generator=gx)
    with torch.no_grad():
        want = ref(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample
        got = ours(x, t, ctx, y)
    assert (got - want).abs().max() <= TOL


# -- stacking, scales, fuse, errors ---------------------------------------------------------------------

def test_stacked_loras_scales_fuse_and_unfuse():
    ref, ours = _flux_pair()
    x = _flux_inputs()
    pipe = _pipe(flux_components, transformer=ours, clip=None, t5=None)
    base = _run_flux(ours, x)
    weights0 = {k: v.clone() for k, v in ours.state_dict().items()}
    a = _flux_diffusers_file(ref, torch.Generator().manual_seed(10), rank=2)
    b = _kohya_flux_file(torch.Generator().manual_seed(11))
    load_lora(pipe, "a.safetensors", 1.0, tensors=dict(a), metadata={})
    only_a = _run_flux(ours, x)
    load_lora(pipe, "b.safetensors", 0.0, tensors=dict(b), metadata={})
    assert torch.allclose(_run_flux(ours, x), only_a, atol=1e-6)  # scale 0 adds nothing
    set_lora_scale(pipe, "b", 0.5)
    both = _run_flux(ours, x)
    assert (both - only_a).abs().max() > 1e-3
    fuse_lora(pipe)
    assert (_run_flux(ours, x) - both).abs().max() <= 1e-5
    unfuse_lora(pipe)
    restored = L.base_state_dict(ours)
    assert max((restored[k] - weights0[k]).abs().max().item() for k in weights0) <= 1e-6
    unload_lora(pipe)
    assert set(ours.state_dict()) == set(weights0)
    assert (_run_flux(ours, x) - base).abs().max() <= 1e-5  # the unfused weights are within rounding


def test_pipeline_methods_and_scale_through_the_tiny_pipeline(tmp_path):
    from models.image_generation.flux.pipeline import FluxPipeline

    pipe = FluxPipeline.tiny()
    g = torch.Generator().manual_seed(12)
    h = pipe.transformer.params.hidden_size
    sd = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": _rand((4, h), g, 1.0),
          "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": _rand((3 * h, 4), g, 1.0)}
    path = write_lora_file(tmp_path / "style.safetensors", sd)
    kw = dict(prompt="a red square", steps=2, seed=0, output_type="latent", progress=False)
    base = pipe(**kw).latents
    name = pipe.load_lora(str(path), 0.5)
    assert pipe.loras == {name: 0.5}
    half = pipe(**kw).latents
    pipe.set_lora_scale(name, 1.0)
    full = pipe(**kw).latents
    assert not torch.equal(base, half) and not torch.equal(half, full)
    pipe.fuse_lora()
    assert (pipe(**kw).latents - full).abs().max() <= 1e-5
    pipe.unfuse_lora().unload_lora()
    assert pipe.loras == {} and (pipe(**kw).latents - base).abs().max() <= 1e-5


def test_a_file_for_another_model_fails_in_one_line(tmp_path):
    from models.image_generation.flux.pipeline import FluxPipeline

    pipe = FluxPipeline.tiny()
    sdxl = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight": torch.zeros(4, 8),
            "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight": torch.zeros(8, 4)}
    with pytest.raises(UserError, match="matches no layer of flux.*lora_unet_input_blocks_4_1"):
        pipe.load_lora(str(write_lora_file(tmp_path / "sdxl.safetensors", sdxl)))
    h = pipe.transformer.params.hidden_size
    wrong = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, h + 1),
             "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(3 * h, 4)}
    with pytest.raises(UserError, match="another model or size"):
        pipe.load_lora(str(write_lora_file(tmp_path / "wide.safetensors", wrong)))
    dora = {**{k.replace("_qkv", "_proj"): v[:, :h] if "down" in k else v[:h] for k, v in wrong.items()},
            "lora_unet_double_blocks_0_img_attn_proj.dora_scale": torch.ones(1, h)}
    with pytest.raises(UserError, match="DoRA"):
        pipe.load_lora(str(write_lora_file(tmp_path / "dora.safetensors", dora)))
    with pytest.raises(UserError, match="not found|cannot be reached|not in the local cache"):
        pipe.load_lora(str(tmp_path / "missing.safetensors"))
    assert pipe.loras == {}
    assert not L.tuner_layers(pipe.transformer)
