"""FLUX transformer: parity with diffusers' FluxTransformer2DModel, every checkpoint layout, full-size keys."""
from __future__ import annotations

import types

import pytest
import torch
from safetensors.torch import save_file

from models.image_generation.flux import PRESETS, FluxParams, FluxTransformer
from models.image_generation.flux import convert as C
from utils.errors import ConversionError, UserError
from utils.nn import grid_ids

import diffusers
from diffusers import FluxTransformer2DModel  # noqa: E402
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers  # noqa: E402


def tiny(in_channels: int = 64, guidance: bool = True, hidden: int = 64, heads: int = 4) -> FluxParams:
    return FluxParams(in_channels=in_channels, out_channels=64, vec_in_dim=32, context_in_dim=48, hidden_size=hidden,
                      num_heads=heads, depth=2, depth_single_blocks=2, axes_dim=C.default_axes(hidden // heads),
                      guidance_embed=guidance)


def inputs(p: FluxParams, batch: int = 2, h: int = 4, w: int = 6, n_txt: int = 7, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(img=torch.randn(batch, h * w, p.in_channels, generator=g), img_ids=grid_ids(h, w),
                txt=torch.randn(batch, n_txt, p.context_in_dim, generator=g), txt_ids=torch.zeros(n_txt, 3),
                timesteps=torch.rand(batch, generator=g), y=torch.randn(batch, p.vec_in_dim, generator=g),
                guidance=torch.full((batch,), 3.5) if p.guidance_embed else None)


def run_ours(model: FluxTransformer, x: dict) -> torch.Tensor:
    b = x["img"].shape[0]
    with torch.no_grad():
        return model(x["img"], x["img_ids"][None].expand(b, -1, -1), x["txt"], x["txt_ids"][None].expand(b, -1, -1),
                     x["timesteps"], x["y"], x["guidance"])


def run_ref(model, x: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(hidden_states=x["img"], encoder_hidden_states=x["txt"], pooled_projections=x["y"],
                     timestep=x["timesteps"], img_ids=x["img_ids"], txt_ids=x["txt_ids"], guidance=x["guidance"]).sample


def reference(p: FluxParams, seed: int = 0) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    return FluxTransformer2DModel(**C.params_to_diffusers_config(p)).eval()


CONFIGS = {"dev": tiny(), "schnell": tiny(guidance=False), "fill": tiny(in_channels=384),
           "control": tiny(in_channels=128), "wide-heads": tiny(hidden=96, heads=3)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parity_with_diffusers_folder(tmp_path, name):
    p = CONFIGS[name]
    ref = reference(p)
    ref.save_pretrained(tmp_path / "transformer")
    # The repo root (with transformer/) and the transformer folder itself both load.
    ours = FluxTransformer.from_pretrained(tmp_path, device="cpu", dtype=torch.float32)
    assert ours.params == p
    x = inputs(p)
    assert (run_ref(ref, x) - run_ours(ours, x)).abs().max().item() <= 1e-4
    ours2 = FluxTransformer.from_pretrained(tmp_path / "transformer", device="cpu", dtype="fp32")
    assert torch.equal(run_ours(ours2, x), run_ours(ours, x))


def test_batched_ids_and_2d_ids_agree():
    p = tiny()
    torch.manual_seed(0)
    model = FluxTransformer(p).eval()
    x = inputs(p)
    with torch.no_grad():
        a = model(x["img"], x["img_ids"], x["txt"], x["txt_ids"], x["timesteps"], x["y"], x["guidance"])
    assert torch.equal(a, run_ours(model, x))


def _diffusers_single_file_converter(hidden: int):
    """diffusers' converter hard-codes the full-size width (inner_dim = 3072) for splitting single-block
    projections; this copy of the same function code has that one constant set to `hidden`."""
    fn = convert_flux_transformer_checkpoint_to_diffusers
    if hidden == 3072:
        return fn
    code = fn.__code__
    assert 3072 in code.co_consts
    consts = tuple(hidden if c == 3072 else c for c in code.co_consts)
    return types.FunctionType(code.replace(co_consts=consts), fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)


@pytest.mark.parametrize("name", ["dev", "schnell", "fill"])
def test_native_layout_through_diffusers_single_file_converter(tmp_path, name):
    """Our native keys are the official ones: diffusers' own single-file converter reads them."""
    p = CONFIGS[name]
    torch.manual_seed(1)
    ours = FluxTransformer(p).eval()
    native = {f"model.diffusion_model.{k}": v.clone() for k, v in ours.state_dict().items()}
    converted = _diffusers_single_file_converter(p.hidden_size)(native)
    ref = FluxTransformer2DModel(**C.params_to_diffusers_config(p)).eval()
    ref.load_state_dict(converted, strict=True)
    x = inputs(p, seed=3)
    assert (run_ref(ref, x) - run_ours(ours, x)).abs().max().item() <= 1e-4


def test_official_single_file_with_prefix_and_dtypes(tmp_path):
    p = tiny()
    torch.manual_seed(2)
    src = FluxTransformer(p).eval()
    sd = src.state_dict()
    x = inputs(p)
    expect = run_ours(src, x)
    # bare official keys, fp32
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "flux1-dev.safetensors")
    m = FluxTransformer.from_pretrained(tmp_path / "flux1-dev.safetensors", device="cpu", dtype=torch.float32)
    assert torch.equal(run_ours(m, x), expect)
    # the folder holding the single file also loads
    m = FluxTransformer.from_pretrained(tmp_path, device="cpu", dtype=torch.float32)
    assert torch.equal(run_ours(m, x), expect)
    # community checkpoint: model.diffusion_model. prefix, bf16, plus VAE/text-encoder keys to ignore
    comm = {f"model.diffusion_model.{k}": v.to(torch.bfloat16).contiguous() for k, v in sd.items()}
    comm["first_stage_model.decoder.conv_in.weight"] = torch.zeros(2, 2)
    comm["text_encoders.clip_l.x.weight"] = torch.zeros(2)
    save_file(comm, tmp_path / "community.safetensors")
    m = FluxTransformer.from_pretrained(tmp_path / "community.safetensors", device="cpu", dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16 and all(t.dtype == torch.bfloat16 for t in m.parameters())
    m32 = FluxTransformer.from_pretrained(tmp_path / "community.safetensors", device="cpu", dtype=torch.float32)
    assert m32.dtype == torch.float32
    assert (run_ours(m32, x) - expect).abs().max().item() < 0.1  # bf16-rounded weights


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason="no float8 in this torch")
def test_fp8_files_load_into_requested_dtype(tmp_path):
    p = tiny()
    torch.manual_seed(3)
    sd = FluxTransformer(p).state_dict()
    fp8 = {k: v.to(torch.float8_e4m3fn) for k, v in sd.items()}
    save_file(fp8, tmp_path / "flux1-dev-fp8.safetensors")
    m = FluxTransformer.from_pretrained(tmp_path / "flux1-dev-fp8.safetensors", device="cpu", dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    for k, v in m.state_dict().items():
        assert torch.equal(v, fp8[k].to(torch.bfloat16)), k
    # "scaled fp8": weight * scale_weight
    scaled = dict(fp8)
    scaled["img_in.scale_weight"] = torch.tensor([2.0])
    scaled["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    save_file(scaled, tmp_path / "scaled.safetensors")
    m = FluxTransformer.from_pretrained(tmp_path / "scaled.safetensors", device="cpu", dtype=torch.float32)
    assert torch.equal(m.img_in.weight, fp8["img_in.weight"].float() * 2)


@pytest.mark.parametrize("preset", ["dev", "schnell", "fill", "canny"])
def test_full_size_key_lists_on_meta(preset):
    """Official key/shape lists at full size, derived from diffusers' full-size model (no weights)."""
    p = PRESETS[preset]
    with torch.device("meta"):
        ref = FluxTransformer2DModel(**C.params_to_diffusers_config(p))
        ours = FluxTransformer(p)
    ref_sd, ours_sd = ref.state_dict(), ours.state_dict()
    shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    # diffusers layout -> our converter -> exactly our native keys and shapes
    assert shapes(C.diffusers_to_native(ref_sd)) == shapes(ours_sd)
    # our native keys -> diffusers' single-file converter (full width, unpatched) -> exactly diffusers' keys
    assert shapes(convert_flux_transformer_checkpoint_to_diffusers(dict(ours_sd))) == shapes(ref_sd)
    assert C.infer_params(ours_sd, preset) == p
    assert C.params_from_diffusers_config(dict(ref.config)) == p
    assert 11.8e9 < ours.num_parameters() < 12.0e9
    # loading assigns the meta tensors' replacements: build on meta, take a meta state dict
    with torch.device("meta"):
        target = FluxTransformer(p)
    from utils.weights import load_into

    load_into(target, C.diffusers_to_native(ref_sd))


def test_conversion_errors(tmp_path):
    p = tiny()
    sd = FluxTransformer(p).state_dict()
    bad = dict(sd)
    bad.pop("double_blocks.0.img_attn.qkv.weight")
    save_file({k: v.contiguous() for k, v in bad.items()}, tmp_path / "broken.safetensors")
    with pytest.raises(ConversionError, match="missing: double_blocks.0.img_attn.qkv.weight"):
        FluxTransformer.from_pretrained(tmp_path / "broken.safetensors", device="cpu")
    save_file({"encoder.conv_in.weight": torch.zeros(2)}, tmp_path / "vae.safetensors")
    with pytest.raises(ConversionError, match="not a FLUX transformer"):
        FluxTransformer.from_pretrained(tmp_path / "vae.safetensors", device="cpu")
    # a diffusers dict with an unknown key, or a fused projection with a part missing
    ref_sd = reference(p).state_dict()
    odd = dict(ref_sd, **{"controlnet_x_embedder.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="controlnet_x_embedder"):
        C.diffusers_to_native(odd)
    part = dict(ref_sd)
    part.pop("transformer_blocks.0.attn.to_k.weight")
    with pytest.raises(ConversionError, match="to_k.weight"):
        C.diffusers_to_native(part)
    # weights of another variant than the preset asked for
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "flux1-dev.safetensors")
    with pytest.raises(UserError, match="preset 'fill' needs in_channels 384"):
        FluxTransformer.from_pretrained(tmp_path / "flux1-dev.safetensors", preset="fill", device="cpu")


def test_input_errors():
    p = tiny()
    model = FluxTransformer(p).eval()
    x = inputs(p)
    with pytest.raises(UserError, match="packed image tokens"):
        model(x["img"][..., :10], x["img_ids"], x["txt"], x["txt_ids"], x["timesteps"], x["y"], x["guidance"])
    with pytest.raises(UserError, match="needs a guidance value"):
        model(x["img"], x["img_ids"], x["txt"], x["txt_ids"], x["timesteps"], x["y"], None)


def test_compile_blocks_keeps_keys():
    model = FluxTransformer(tiny())
    keys = list(model.state_dict())
    model.compile_blocks()
    assert list(model.state_dict()) == keys


@pytest.mark.slow
def test_single_file_converter_at_full_width():
    """diffusers' converter unpatched, at the real width (3072, 24 heads) with one block of each kind."""
    p = FluxParams(vec_in_dim=32, context_in_dim=64, depth=1, depth_single_blocks=1)
    torch.manual_seed(0)
    ours = FluxTransformer(p).eval()
    ref = FluxTransformer2DModel(**C.params_to_diffusers_config(p)).eval()
    ref.load_state_dict(convert_flux_transformer_checkpoint_to_diffusers(
        {k: v.clone() for k, v in ours.state_dict().items()}), strict=True)
    x = inputs(p, batch=1, h=2, w=2, n_txt=3)
    assert (run_ref(ref, x) - run_ours(ours, x)).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_compiled_blocks_match_eager():
    """torch.compile of the blocks (the inference path with the fused GELU write included) gives the eager output."""
    p = tiny()
    torch.manual_seed(4)
    model = FluxTransformer(p).eval()
    x = inputs(p)
    with torch.inference_mode():
        expect = run_ours(model, x)
        model.compile_blocks()
        got = run_ours(model, x)
    assert (got - expect).abs().max().item() <= 1e-4


def test_gradients_with_and_without_checkpointing():
    """Training path: the same loss and gradients with gradient checkpointing on and off."""
    p = tiny()
    torch.manual_seed(5)
    model = FluxTransformer(p).train()
    x = inputs(p, batch=1)

    def loss_and_grads():
        model.zero_grad()
        out = model(x["img"], x["img_ids"][None], x["txt"], x["txt_ids"][None], x["timesteps"], x["y"], x["guidance"])
        loss = out.square().mean()
        loss.backward()
        return loss.detach(), [q.grad.clone() for q in model.parameters()]

    l1, g1 = loss_and_grads()
    model.gradient_checkpointing = True
    l2, g2 = loss_and_grads()
    assert torch.allclose(l1, l2)
    assert all(torch.allclose(a, c, atol=1e-6) for a, c in zip(g1, g2))
    assert all(g.abs().sum() > 0 for g in g1[:3])
    # inference under no_grad equals the training-mode forward (the fused single-block path)
    with torch.no_grad():
        fast = model(x["img"], x["img_ids"][None], x["txt"], x["txt_ids"][None], x["timesteps"], x["y"], x["guidance"])
    slow = model(x["img"], x["img_ids"][None], x["txt"], x["txt_ids"][None], x["timesteps"], x["y"], x["guidance"])
    assert (fast - slow.detach()).abs().max().item() <= 1e-5
