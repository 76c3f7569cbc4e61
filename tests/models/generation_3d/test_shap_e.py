"""Shap-E: parity with diffusers' PriorTransformer, ShapERenderer, ShapEPipeline and
ShapEImg2ImgPipeline on tiny random components (the same weights through our converters), the
release's full-size layouts on meta, meshes, files and user errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import HeunDiscreteScheduler, PriorTransformer
from diffusers.pipelines.shap_e.renderer import ShapERenderer

from models.generation_3d.shap_e import convert as cv
from models.generation_3d.shap_e.config import PRESETS, DecoderConfig
from models.generation_3d.shap_e.model import ShapEDecoder, ShapEPrior
from models.generation_3d.shap_e.pipeline import ShapEPipeline
from models.generation_3d.shap_e.render import extract_mesh, grid_points, render_views, sdf_grid, srgb_to_linear
from utils.errors import UserError


def _randomize(module, std=0.3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module.eval()


def _diffusers_prior(cfg, device=None):
    image = cfg.cond == "image"
    kw = dict(num_attention_heads=cfg.heads, attention_head_dim=cfg.width // cfg.heads, num_layers=cfg.layers,
              embedding_dim=cfg.channels, num_embeddings=cfg.n_ctx, additional_embeddings=0, time_embed_act_fn="gelu",
              norm_in_type="layer", embedding_proj_norm_type="layer" if image else None, encoder_hid_proj_type=None,
              added_emb_type=None, time_embed_dim=cfg.width * 4, embedding_proj_dim=cfg.cond_dim,
              clip_embed_dim=cfg.channels * 2)
    if device == "meta":
        with torch.device("meta"):
            return PriorTransformer(**kw)
    return PriorTransformer(**kw).eval()


def _diffusers_renderer(ours: ShapEDecoder):
    c = ours.config
    ref = ShapERenderer(param_names=tuple(ours.param_names), param_shapes=tuple(c.layer_shapes()[:c.projected]),
                        d_latent=c.d_latent, d_hidden=c.hidden, n_output=c.outputs, n_hidden_layers=c.hidden_layers,
                        insert_direction_at=c.insert_direction_at).eval()
    ref.load_state_dict(cv.decoder_to_diffusers(ours.state_dict(), c))
    return ref


def _scheduler():
    return HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
                                 use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)


@pytest.mark.parametrize("preset", ["tiny", "tiny-image"])
def test_prior_matches_diffusers_prior_transformer(preset):
    cfg = PRESETS[preset].prior
    ours = _randomize(ShapEPrior(cfg))
    ref = _diffusers_prior(cfg)
    ref.load_state_dict(cv.prior_to_diffusers(ours.state_dict(), cfg.heads))
    back = cv.prior_from_diffusers(ref.state_dict(), cfg.heads)
    assert set(back) == set(ours.state_dict()) and all(torch.equal(back[k], v) for k, v in ours.state_dict().items())
    x = torch.randn(2, cfg.n_ctx, cfg.channels)
    t = torch.tensor([3.5, 700.0])
    if cfg.cond == "image":
        c = torch.randn(2, cfg.cond_tokens, cfg.cond_dim)
        expected = ref(x, t, proj_embedding=c).predicted_image_embedding
    else:
        c = torch.nn.functional.normalize(torch.randn(2, cfg.cond_dim), dim=-1)
        expected = ref(x, t, proj_embedding=c * cfg.cond_dim ** 0.5).predicted_image_embedding
    got = ours(x, t, c)
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max() <= 1e-4


def test_official_prior_keys_are_native_under_wrapped():
    ours = ShapEPrior(PRESETS["tiny"].prior).state_dict()
    official = {f"wrapped.{k}": v for k, v in ours.items()}
    assert cv.detect_prior_layout(official) == "official"
    assert cv.prior_to_native(official).keys() == ours.keys()
    cfg = cv.prior_config_from_state(ours, PRESETS["text300M"].prior, heads=4)
    assert (cfg.width, cfg.layers, cfg.n_ctx, cfg.channels, cfg.cond) == (32, 2, 32, 16, "text")


@pytest.mark.parametrize("size,ray_batch,coarse,fine", [
    (8, 320, 16, 32),  # 4 ray batches of 320 rays, each reseeded as the release does
    pytest.param(32, 4096, 64, 128, marks=pytest.mark.slow),  # the released sampling
])
def test_renderer_views_match_diffusers_shap_e_renderer(size, ray_batch, coarse, fine):
    ours = _randomize(ShapEDecoder(PRESETS["tiny"].decoder), seed=1)
    ref = _diffusers_renderer(ours)
    latent = torch.randn(1, ours.config.latent_rows, ours.config.d_latent, generator=torch.Generator().manual_seed(3))
    expected = ref.decode_to_image(latent, "cpu", size=size, ray_batch_size=ray_batch, n_coarse_samples=coarse,
                                   n_fine_samples=fine)
    got = render_views(ours, latent, size, ray_batch=ray_batch, coarse=coarse, fine=fine)
    assert expected.std() > 0.01  # an object, not only background
    assert (got - expected).abs().max() <= 1e-4


def test_mesh_field_and_colours_match_the_diffusers_mlp():
    ours = _randomize(ShapEDecoder(PRESETS["tiny"].decoder), seed=1)
    ref = _diffusers_renderer(ours)
    latent = torch.randn(1, ours.config.latent_rows, ours.config.d_latent, generator=torch.Generator().manual_seed(3))
    projected = ref.params_proj(latent)
    with torch.no_grad():
        for name, param in ref.mlp.state_dict().items():
            if f"nerstf.{name}" in projected:
                param.copy_(projected[f"nerstf.{name}"][0])
    weights = ours.project(latent)
    field = sdf_grid(ours, weights, 12)
    expected = ref.mlp(position=grid_points(12)[None], direction=None, ts=None, nerf_level="fine",
                       rendering_mode="stf").signed_distance[0, :, 0].reshape(12, 12, 12)
    assert (field - expected).abs().max() <= 1e-5
    verts, faces, colours = extract_mesh(ours, latent, 12)
    assert len(faces) > 0 and np.abs(verts).max() <= 1.0
    ref_colours = srgb_to_linear(ref.mlp(position=torch.from_numpy(verts)[None], direction=None, ts=None,
                                         nerf_level="fine", rendering_mode="stf").channels[0])
    assert np.abs(colours - ref_colours.detach().numpy()).max() <= 1e-5


def _diffusers_text_pipeline(pipe, tok_folder):
    from diffusers import ShapEPipeline as DiffusersShapE
    from transformers import CLIPTokenizer

    ref_prior = _diffusers_prior(pipe.config.prior)
    ref_prior.load_state_dict(cv.prior_to_diffusers(pipe.prior.state_dict(), pipe.config.prior.heads))
    return DiffusersShapE(prior=ref_prior, text_encoder=pipe.encoder.model, tokenizer=CLIPTokenizer.from_pretrained(
        str(tok_folder)), scheduler=_scheduler(), shap_e_renderer=_diffusers_renderer(pipe.decoder))


@pytest.mark.parametrize("render", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_text_pipeline_matches_diffusers_shap_e_pipeline(tmp_path, render):
    """Latents of a guided 2-object run (per-object seeds), and (slow: diffusers renders 20 views of
    32 x 32 pixels with 4096-ray batches) the rendered frames."""
    from transformers import CLIPTokenizer

    from tests.helpers.tokenizers import write_clip_tokenizer

    info = write_clip_tokenizer(tmp_path / "tok")
    pipe = ShapEPipeline.random("tiny")
    pipe.encoder.tokenizer = CLIPTokenizer.from_pretrained(str(info.folder))
    ref = _diffusers_text_pipeline(pipe, info.folder)
    ref.set_progress_bar_config(disable=True)
    prompt = "a red chair"
    gens = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    expected = ref(prompt, num_images_per_prompt=2, num_inference_steps=3, guidance_scale=3.0, generator=gens,
                   output_type="latent").images
    latents = pipe.sample_latents(pipe.encode_prompt([prompt] * 2), 3, 3.0, seed=5)
    assert expected.abs().max() > 0.1
    assert (latents - expected).abs().max() <= 1e-3
    if not render:
        return
    gens = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    frames = ref(prompt, num_images_per_prompt=2, num_inference_steps=3, guidance_scale=3.0, generator=gens,
                 frame_size=32, output_type="np").images
    out = pipe.decode(latents, frame_size=32, n_views=20, mesh=False)
    got = np.stack([np.asarray(im, dtype=np.float32) / 255 for im in out.renders]).reshape(frames.shape)
    assert np.abs(got - frames).max() <= 1e-3 + 1 / 255  # our renders are 8-bit images


def test_image_pipeline_matches_diffusers_shap_e_img2img_pipeline():
    from diffusers import ShapEImg2ImgPipeline
    from transformers import CLIPImageProcessor

    pipe = ShapEPipeline.random("tiny-image")
    cfg = pipe.config.prior
    ref_prior = _diffusers_prior(cfg)
    ref_prior.load_state_dict(cv.prior_to_diffusers(pipe.prior.state_dict(), cfg.heads))
    ref = ShapEImg2ImgPipeline(prior=ref_prior, image_encoder=pipe.encoder, image_processor=CLIPImageProcessor(),
                               scheduler=_scheduler(), shap_e_renderer=_diffusers_renderer(pipe.decoder))
    ref.set_progress_bar_config(disable=True)
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    expected = ref(pixels, num_inference_steps=3, guidance_scale=3.0, generator=[torch.Generator().manual_seed(9)],
                   output_type="latent").images
    latents = pipe.sample_latents(pipe.encode_image(pixels), 3, 3.0, seed=9)
    assert expected.abs().max() > 0.1
    assert (latents - expected).abs().max() <= 1e-3


@pytest.mark.parametrize("preset", ["text300M", "image300M"])
def test_full_size_prior_matches_the_released_diffusers_layout_on_meta(preset):
    cfg = PRESETS[preset].prior
    with torch.device("meta"):
        ours = ShapEPrior(cfg)
    ref = _diffusers_prior(cfg, "meta").state_dict()
    mapped = cv.prior_to_diffusers(ours.state_dict(), cfg.heads)
    assert set(mapped) == set(ref)
    assert all(tuple(mapped[k].shape) == tuple(ref[k].shape) for k in ref if k not in ("clip_mean", "clip_std"))
    n = sum(p.numel() for p in ours.parameters())
    assert 300e6 < n < 400e6  # "300M"
    # the release's sizes (diffusers' conversion config of text_cond.pt / image_cond.pt)
    assert (cfg.width, cfg.layers, cfg.heads, cfg.n_ctx, cfg.channels) == (1024, 24, 16, 1024, 1024)
    assert cfg.cond_dim == (768 if preset == "text300M" else 1024)


def test_full_size_decoder_matches_the_released_renderer_on_meta():
    with torch.device("meta"):
        ours = ShapEDecoder(DecoderConfig())
        ref = ShapERenderer()  # diffusers' defaults are the released transmitter's decoder
    mapped = cv.decoder_to_diffusers(ours.state_dict(), ours.config)
    expected = ref.state_dict()
    assert set(mapped) == set(expected)
    assert all(tuple(mapped[k].shape) == tuple(expected[k].shape) for k in expected)
    official = {**{f"encoder.{k}": v for k, v in ours.state_dict().items() if k.startswith("params_proj.")},
                **{f"renderer.{k}": v for k, v in ours.state_dict().items() if k.startswith("nerstf.")},
                "encoder.output_proj.weight": torch.zeros(1)}
    assert cv.decoder_to_native(official).keys() == ours.state_dict().keys()


def test_sphere_sdf_mesh_is_watertight_and_on_the_sphere(tmp_path):
    import trimesh

    from utils.visualization.mesh_files import mesh_writers
    from utils.visualization.mesh import marching_cubes

    n, r = 40, 0.6
    pts = grid_points(n).reshape(n, n, n, 3)
    sdf = r - pts.norm(dim=-1)  # positive inside, as Shap-E's field
    verts, faces = marching_cubes(sdf, level=0.0, bounds=((-1.0,) * 3, (1.0,) * 3))
    voxel = 2.0 / (n - 1)
    assert np.abs(np.linalg.norm(verts, axis=1) - r).max() < voxel
    mesh = trimesh.Trimesh(verts, faces, process=True)
    assert mesh.is_watertight
    colours = np.full_like(verts, 0.5)
    for suffix, write in mesh_writers(verts, faces, colours).items():
        write(tmp_path / f"m{suffix}")
        back = trimesh.load(tmp_path / f"m{suffix}", force="mesh", process=False)
        assert (len(back.vertices), len(back.faces)) == (len(verts), len(faces)), suffix


def test_tiny_pipeline_writes_every_format_and_is_seeded(tmp_path):
    import trimesh

    pipe = ShapEPipeline.from_pretrained(preset="tiny")
    out = pipe(prompt="a red chair", seed=3, num_images=2)
    assert len(out.renders) == 2 * 2 and out.points is not None and len(out.points) > 0
    for suffix in (".glb", ".obj", ".ply", ".npz", ".gif"):
        (path,) = out.save(tmp_path / f"chair{suffix}")
        assert path.stat().st_size > 0
    mesh = trimesh.load(tmp_path / "chair.glb", force="mesh", process=False)
    assert len(mesh.vertices) == len(out.points)
    again = pipe(prompt="a red chair", seed=3, num_images=2)
    assert np.array_equal(np.asarray(again.renders[0]), np.asarray(out.renders[0]))
    second = pipe(prompt="a red chair", seed=4)  # object 0 of seed 4 is object 1 of seed 3
    (path,) = second.save(tmp_path / "second.npz")
    first, alone = np.load(tmp_path / "chair.npz")["latents"], np.load(path)["latents"]
    # the same latents up to float32 rounding carried through the sampling steps (a batch of 2 and a batch of 1
    # round differently: ~1e-4 here), against differences of order 1 between two objects
    assert np.abs(alone[0] - first[1]).max() <= 1e-3 and np.abs(first[0] - first[1]).max() > 0.1
    diff = np.abs(np.asarray(second.renders[0]).astype(int) - np.asarray(out.renders[2]).astype(int))
    assert diff.max() <= 1  # at most one 8-bit level where a rounding lands on the other side


def test_user_mistakes_are_one_line_errors():
    text = ShapEPipeline.from_pretrained(preset="tiny")
    with pytest.raises(UserError, match="prompt is empty"):
        text(prompt="  ")
    with pytest.raises(UserError, match="text-conditioned"):
        text(image="x.png")
    image = ShapEPipeline.from_pretrained(preset="tiny-image")
    with pytest.raises(UserError, match="cannot read the image"):
        image(image=__file__)
    with pytest.raises(UserError, match="image-conditioned"):
        image(prompt="a chair")


def test_cli_writes_the_mesh_and_turntable_and_refuses_bad_input(tmp_path, capsys):
    import trimesh

    from inference.generate_3d import main

    out, gif = tmp_path / "chair.glb", tmp_path / "chair.gif"
    assert main(["--model", "shap_e", "--preset", "tiny", "--prompt", "a red chair", "--out", str(out),
                 "--turntable", str(gif), "--seed", "1"]) == 0
    assert trimesh.load(out, force="mesh").faces.shape[0] > 0 and gif.stat().st_size > 0
    assert "Shap-E prior" in capsys.readouterr().err  # the progress bar over the diffusion steps
    bad = [(["--prompt", " "], "prompt is empty"),
           (["--preset", "tiny-image", "--image", __file__], "is not a readable image"),
           (["--prompt", "a chair", "--out", str(tmp_path / "x.stl")], "cannot write '.stl'")]
    for extra, message in bad:
        argv = ["--model", "shap_e", "--preset", "tiny", "--out", str(tmp_path / "bad.glb"), *extra]
        if "--preset" in extra:
            argv = argv[:3] + argv[5:]  # the case's own preset
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and message in err[0], (extra, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chair.gif", "chair.glb"]  # nothing half-written


def test_official_release_files_load_and_generate_the_same(tmp_path):
    """OpenAI's layout: text_cond.pt (prior under wrapped.) and transmitter.pt (encoder.params_proj.*,
    renderer.nerstf.*, plus point-cloud encoder keys that are not needed)."""
    pipe = ShapEPipeline.random("tiny")
    torch.save({f"wrapped.{k}": v for k, v in pipe.prior.state_dict().items()}, tmp_path / "text_cond.pt")
    transmitter = {**{f"encoder.{k}": v for k, v in pipe.decoder.state_dict().items() if k.startswith("params_proj.")},
                   **{f"renderer.{k}": v for k, v in pipe.decoder.state_dict().items() if k.startswith("nerstf.")},
                   "encoder.input_proj.weight": torch.zeros(4, 6)}
    torch.save(transmitter, tmp_path / "transmitter.pt")
    loaded = ShapEPipeline.from_official(tmp_path, "tiny", encoder=pipe.encoder)
    a = pipe(prompt="a red chair", seed=2, mesh=False)
    b = loaded(prompt="a red chair", seed=2, mesh=False)
    assert np.array_equal(np.asarray(a.renders[0]), np.asarray(b.renders[0]))
    with pytest.raises(UserError, match="lacks image_cond.pt"):
        ShapEPipeline.from_official(tmp_path, "tiny-image")


def test_a_saved_diffusers_folder_loads_and_generates_the_same(tmp_path):
    from transformers import CLIPTokenizer

    from tests.helpers.tokenizers import write_clip_tokenizer

    info = write_clip_tokenizer(tmp_path / "tok")
    pipe = ShapEPipeline.random("tiny")
    pipe.encoder.tokenizer = CLIPTokenizer.from_pretrained(str(info.folder))
    _diffusers_text_pipeline(pipe, info.folder).save_pretrained(tmp_path / "shap-e")
    loaded = ShapEPipeline.from_pretrained(tmp_path / "shap-e", preset="tiny")
    assert loaded.config.prior == pipe.config.prior and loaded.config.decoder == pipe.config.decoder
    emb = pipe.encode_prompt(["a red chair"])
    assert torch.allclose(loaded.encode_prompt(["a red chair"]), emb, atol=1e-6)
    a = pipe.sample_latents(emb, 2, 3.0, seed=1)
    b = loaded.sample_latents(emb, 2, 3.0, seed=1)
    assert torch.equal(a, b)
