"""Point-E against OpenAI's point-e code: golden outputs of the reference at tiny configs with seeded
random weights (tests/fixtures/point_e/make_golden.py), and the released configs' keys and shapes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.generation_3d.point_e.config import PRESETS
from models.generation_3d.point_e.model import PointESDF, PointETransformer
from utils.weights import load_into

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "point_e"


def _golden(name: str):
    data = load_file(str(FIXTURES / f"golden_{name}.safetensors"))
    state = {k[len("state."):]: v for k, v in data.items() if k.startswith("state.")}
    inputs = {k[len("in."):]: v for k, v in data.items() if k.startswith("in.")}
    return state, inputs, data["out"]


@pytest.mark.parametrize("name", ["tiny-textvec", "tiny", "tiny-upsample"])
def test_transformers_match_the_reference_code(name):
    state, inputs, expected = _golden(name)
    model = load_into(PointETransformer(PRESETS[name]), state, what="Point-E golden weights").eval()
    with torch.no_grad():
        got = model(inputs["x"], inputs["t"], clip=inputs.get("clip"), low_res=inputs.get("low_res"))
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max() <= 1e-4


def test_sdf_model_matches_the_reference_code():
    state, inputs, expected = _golden("tiny-sdf")
    model = load_into(PointESDF(PRESETS["tiny-sdf"]), state, what="Point-E golden weights").eval()
    with torch.no_grad():
        got = model(inputs["queries"], inputs["cloud"])
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["base40M-imagevec", "base40M-textvec", "base40M-uncond", "base40M", "base300M",
                                  "base1B", "upsample", "sdf"])
def test_released_configs_have_the_reference_keys_and_shapes_on_meta(name):
    released = json.loads((FIXTURES / "released_keys.json").read_text())[name]
    cfg = PRESETS[name]
    with torch.device("meta"):
        model = PointESDF(cfg) if name == "sdf" else PointETransformer(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == released


def test_guided_karras_sampling_matches_the_reference_run():
    from models.generation_3d.point_e.diffusion import GaussianDiffusion, karras_sample, scale_channels

    state, _, _ = _golden("tiny-textvec")
    model = load_into(PointETransformer(PRESETS["tiny-textvec"]), state, what="Point-E golden weights").eval()
    data = load_file(str(FIXTURES / "golden_sampling.safetensors"))
    clip = torch.cat([data["in.clip"], torch.zeros_like(data["in.clip"])])
    got = karras_sample(lambda x, t: model(x, t, clip=clip), GaussianDiffusion("cosine"), (1, 6, 64), steps=3,
                        sigma_min=1e-3, sigma_max=120.0, s_churn=3.0, guidance_scale=3.0,
                        generator=torch.Generator().manual_seed(7))
    expected = data["out"]
    assert expected.std() > 0.1
    # compared in the diffusion's [-1, 1] channel space (xyz x 2, rgb / 127.5 - 1)
    assert (scale_channels(got) - scale_channels(expected)).abs().max() <= 1e-4


def test_tiny_pipeline_clouds_meshes_files_and_seeds(tmp_path):
    import numpy as np
    import trimesh

    from models.generation_3d.point_e.pipeline import PointEPipeline

    pipe = PointEPipeline.from_pretrained(preset="tiny")
    out = pipe(prompt="a red motorcycle", seed=3, num_images=2, mesh=True)
    per = PRESETS["tiny-textvec"].n_ctx + PRESETS["tiny-upsample"].n_ctx  # base points + upsampled points
    assert out.points.shape == (2 * per, 3) and out.colors.min() >= 0 and out.colors.max() <= 1
    assert len(out.renders) == 2 and len(set(np.asarray(out.renders[0]).reshape(-1, 3)[:, 0])) > 1  # points drawn
    for suffix in (".ply", ".npz", ".glb", ".obj", ".gif"):
        (path,) = out.save(tmp_path / f"x{suffix}")
        assert path.stat().st_size > 0
    cloud = trimesh.load(tmp_path / "x.ply", process=False)
    assert len(cloud.vertices) == 2 * per
    assert np.load(tmp_path / "x.npz")["coords"].shape == (2 * per, 3)
    mesh = trimesh.load(tmp_path / "x.glb", force="mesh", process=False)
    assert len(mesh.faces) > 0
    second = pipe(prompt="a red motorcycle", seed=4)  # object 0 of seed 4 is object 1 of seed 3 (shifted by 1.2 in x)
    assert np.allclose(second.points + np.array([1.2, 0, 0], np.float32), out.points[per:], atol=1e-5)


def test_cli_cloud_and_mesh_and_bad_input(tmp_path, capsys):
    import trimesh

    from inference.generate_3d import main

    cloud, mesh = tmp_path / "cloud.ply", tmp_path / "mesh.obj"
    assert main(["--model", "point_e", "--preset", "tiny", "--prompt", "a red motorcycle", "--out", str(cloud),
                 "--mesh", str(mesh)]) == 0
    assert len(trimesh.load(cloud, process=False).vertices) > 0 and len(trimesh.load(mesh, process=False).faces) > 0
    assert "Point-E base" in capsys.readouterr().err
    for extra, message in [(["--preset", "tiny", "--prompt", ""], "prompt is empty"),
                           (["--preset", "tiny-image", "--image", __file__], "is not a readable image"),
                           (["--preset", "tiny", "--prompt", "a", "--out", str(tmp_path / "c.xyz")], "'.xyz'"),
                           (["--preset", "tiny", "--prompt", "a", "--mesh", str(tmp_path / "m.stl")], "'.stl'")]:
        with pytest.raises(SystemExit) as exit_:
            main(["--model", "point_e", "--out", str(tmp_path / "bad.ply"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and message in err[0], (extra, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cloud.ply", "mesh.obj"]


def test_release_files_with_clip_wrapper_keys_load_through_the_converter():
    from models.generation_3d.point_e.convert import from_official
    from utils.errors import UserError

    cfg = PRESETS["tiny"]
    ours = PointETransformer(cfg)
    release = {**{k: v.clone() + 1 for k, v in ours.state_dict().items()},
               "clip.model.visual.proj": torch.zeros(4, 4), "clip.logit_scale": torch.zeros(())}
    with pytest.raises(UserError, match="clip"):  # the wrapper's keys do not fit the transformer as they are
        load_into(PointETransformer(cfg), release)
    loaded = load_into(PointETransformer(cfg), from_official(release))
    assert set(from_official(release)) == set(ours.state_dict())
    assert all(torch.equal(loaded.state_dict()[k], release[k]) for k in ours.state_dict())
