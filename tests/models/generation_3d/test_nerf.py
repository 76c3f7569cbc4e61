"""NeRF package: every method's short run lowers its loss, resume is exact, checkpoints of another
preset are refused, the pipeline renders and exports a trained checkpoint, pose refinement is a
rigid correction of the rays."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.generation_3d.nerf.config import get_config, train_config
from models.generation_3d.nerf.convert import check_checkpoint, load_model
from models.generation_3d.nerf.pipeline import NeRFPipeline, load_camera_path
from models.generation_3d.nerf.training import Trainer, fit_scene
from utils.data.nerf_synthetic import load_nerf_synthetic
from utils.data.synthetic_scene import ensure_synthetic_scene
from utils.errors import UserError
from utils.rendering.pose_refinement import PoseRefinement, so3_exp
from utils.rendering.rays import generate_rays

# small networks of each method, for runs of seconds
SMALL = {
    "vanilla": dict(mlp_width=32, mlp_depth=3, skip_layer=2, color_width=16, num_coarse=16, num_fine=16,
                    pos_max_deg=6),
    "mipnerf": dict(mlp_width=32, mlp_depth=3, skip_layer=2, color_width=16, num_coarse=16, num_fine=16,
                    pos_max_deg=8),
    "instant-ngp": dict(hash_levels=4, hash_log2_size=12, hash_max_res=64, hidden_dim=16, color_hidden=16,
                        color_layers=1, grid_resolution=16, render_steps=96, grid_update_every=4, grid_warmup=8),
    "nerfacto": dict(hash_levels=4, hash_log2_size=12, hash_max_res=64, hidden_dim=16, color_hidden=16,
                     color_layers=1, num_proposal_samples=(24, 12), num_nerf_samples=8, proposal_levels=3,
                     proposal_max_res=(32, 48), proposal_log2_size=10, anneal_steps=10),
}
LR = {"vanilla": 5e-3, "mipnerf": 1e-2, "instant-ngp": 1e-2, "nerfacto": 1e-2}


@pytest.fixture(autouse=True)
def _one_thread():
    # many small operations: on a shared 2-core machine one thread beats two waiting on each other
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = ensure_synthetic_scene(tmp_path_factory.mktemp("scene") / "s", n_train=6, n_test=2, size=16)
    return load_nerf_synthetic(root, "train"), load_nerf_synthetic(root, "test")


def _trainer(preset, scene, out, steps, rays=256, **train_kw):
    train, test = scene
    cfg, norm = fit_scene(replace(get_config(preset, "cpu"), **SMALL[preset]), train, False)
    tc = replace(train_config(preset, "cpu"), steps=steps, rays=rays, lr=LR[preset], warmup_steps=2,
                 decay_steps=0, **train_kw)
    if tc.target_samples:
        tc = replace(tc, target_samples=1 << 14, max_rays=512)
    return Trainer(preset, cfg, tc, train, test, out, torch.device("cpu"), norm, tensorboard=False)


@pytest.mark.parametrize("preset", ["vanilla", "mipnerf", "instant-ngp", "nerfacto"])
def test_each_method_lowers_its_loss(preset, scene, tmp_path):
    steps = 80 if preset == "nerfacto" else 50  # the proposal networks start flat and take a while
    t = _trainer(preset, scene, tmp_path, steps)
    before = t.evaluate()["psnr"]
    hist = t.fit(progress=False, log_every=1)["history"]
    first = sum(h["mse"] for h in hist[:8]) / 8
    last = sum(h["mse"] for h in hist[-8:]) / 8
    assert last < 0.8 * first, (preset, first, last)
    assert (tmp_path / "ckpts" / f"step_{steps:07d}.pt").is_file()
    m = t.evaluate(write_dir=tmp_path / "renders", depth_dir=tmp_path / "depth")
    assert m["split"] == "test" and m["n_views"] == 2 and m["method"] == t.mcfg.method
    assert m["psnr"] > before + 1.0, (preset, before, m["psnr"])
    assert len(list((tmp_path / "renders").glob("*.png"))) == 2 and len(list((tmp_path / "depth").glob("*.png"))) == 2


@pytest.mark.parametrize("preset", ["instant-ngp", "nerfacto"])
def test_resume_is_exact(preset, scene, tmp_path):
    straight = _trainer(preset, scene, tmp_path / "a", 12)
    straight.save_every = 1000
    straight.fit(progress=False)
    first = _trainer(preset, scene, tmp_path / "b", 12)
    first.save_every = 6
    first.fit(progress=False)
    (tmp_path / "b" / "ckpts" / "step_0000012.pt").unlink()  # as if the run had died after step 6
    resumed = _trainer(preset, scene, tmp_path / "b", 12)
    resumed.fit(resume=True, progress=False)
    assert resumed.step == 12 and resumed.n_rays == straight.n_rays
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if preset == "nerfacto":
        assert resumed.model.pose.deltas.abs().sum() > 0  # the poses were being refined
    # a fresh run refuses a folder that holds checkpoints
    with pytest.raises(UserError, match="--resume"):
        _trainer(preset, scene, tmp_path / "b", 12).fit(progress=False)


def test_checkpoints_of_another_preset_or_kind_are_refused(scene, tmp_path):
    t = _trainer("instant-ngp", scene, tmp_path / "run", 2)
    t.fit(progress=False)
    ckpt = tmp_path / "run" / "ckpts" / "step_0000002.pt"
    assert check_checkpoint(tmp_path / "run")["preset"] == "instant-ngp"
    with pytest.raises(UserError, match="holds a 'instant-ngp' model, not 'nerfacto'"):
        check_checkpoint(ckpt, preset="nerfacto")
    with pytest.raises(UserError, match="--preset instant-ngp"):
        NeRFPipeline.from_pretrained(ckpt, preset="vanilla")
    other = tmp_path / "other.pt"
    torch.save({"splats": {"means": torch.zeros(2, 3)}, "step": 3}, other)
    with pytest.raises(UserError, match="not a NeRF checkpoint"):
        load_model(other)
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "missing.pt")
    broken = torch.load(ckpt, weights_only=True)
    name = next(k for k, v in broken["model"].items() if v.is_floating_point() and v.numel())
    broken["model"][name] = torch.full_like(broken["model"][name], float("nan"))
    torch.save(broken, tmp_path / "nan.pt")
    with pytest.raises(UserError, match=f"NaN values \\(first in tensor '{name}'\\)"):
        load_model(tmp_path / "nan.pt")
    resume_other = _trainer("nerfacto", scene, tmp_path / "run", 4)
    with pytest.raises(UserError, match="not 'nerfacto'"):
        resume_other.fit(resume=True, progress=False)


def test_pipeline_renders_and_exports_a_trained_checkpoint(scene, tmp_path):
    t = _trainer("instant-ngp", scene, tmp_path / "run", 30)
    t.fit(progress=False)
    pipe = NeRFPipeline.from_pretrained(tmp_path / "run")
    assert pipe.preset == "instant-ngp" and len(pipe.training_cameras) == 6
    # the training views rendered by the pipeline are the trainer's renders
    train_views = pipe.camera_path("train", width=16)
    assert torch.allclose(pipe.render(train_views[:1])["rgb"], t.render(t.cameras.to("cpu")[:1])["rgb"], atol=1e-6)
    out = pipe(n_views=3, width=16, mesh_resolution=24, mesh_threshold=0.0)
    assert len(out.renders) == 3 and out.renders[0].size == (16, 16) and len(out.cameras) == 3
    written = out.save(tmp_path / "mesh.obj")
    assert written[0].read_text().startswith("# written by cv-generative")
    from models.generation_3d.nerf.export import density_grid

    grid, _ = density_grid(pipe.model, 24)
    level = float(grid.flatten().quantile(0.95))  # a short run's densities are low: mesh its densest 5%
    verts, faces, colors = pipe.mesh(resolution=24, threshold=level)
    assert len(faces) > 0 and colors.shape == verts.shape and 0 <= colors.min() and colors.max() <= 1
    box = np.array(t.mcfg.aabb)
    assert (verts >= box[:3] - 1e-4).all() and (verts <= box[3:] + 1e-4).all()
    pts, cols = pipe.point_cloud(pipe.train_cameras(16), num_points=500, min_opacity=0.2)
    assert pts.shape == cols.shape and 0 < len(pts) <= 500
    # a nerfstudio camera path (OpenGL axes, vertical fov in degrees) gives the same views as the cameras it holds
    c2w_gl = torch.linalg.inv(pipe.training_cameras.viewmats[:2].double()).clone()
    c2w_gl[:, :3, 1:3] *= -1
    fov_y = 2 * math.degrees(math.atan(0.5 * 16 / float(pipe.training_cameras.Ks[0, 1, 1])))
    path = tmp_path / "path.json"
    path.write_text(json.dumps({"render_width": 16, "render_height": 16, "camera_path": [
        {"camera_to_world": m.reshape(-1).tolist(), "fov": fov_y} for m in c2w_gl]}))
    cams = load_camera_path(path)
    assert torch.allclose(cams.viewmats, pipe.training_cameras.viewmats[:2], atol=1e-5)
    assert torch.allclose(cams.Ks, pipe.training_cameras.Ks[:2], atol=1e-3)
    with pytest.raises(UserError, match="neither"):
        path.write_text("{}")
        load_camera_path(path)


def test_unbounded_scenes_are_normalised_and_contracted(scene):
    train, _ = scene
    cfg, norm = fit_scene(get_config("nerfacto", "cpu"), train, True)
    assert cfg.unbounded and cfg.aabb == (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    centers = norm.cameras(train.cameras).centers
    assert abs(float(centers.norm(dim=-1).max()) - 1.0) < 1e-5 and float(centers.mean(0).norm()) < 1e-5
    assert torch.allclose(norm.to_world(centers), train.cameras.centers, atol=1e-5)
    ngp, _ = fit_scene(get_config("instant-ngp", "cpu"), train, True)
    assert ngp.grid_levels == 4 and ngp.cone_angle > 0


def test_pose_refinement_is_a_rigid_correction_of_the_rays():
    omega = torch.tensor([[0.3, -0.2, 0.5], [0.0, 0.0, 0.0], [1e-5, 0.0, 2e-5]], dtype=torch.float64)
    K = torch.zeros(3, 3, 3, dtype=torch.float64)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -omega[:, 2], omega[:, 1], -omega[:, 0]
    K = K - K.transpose(1, 2)
    assert torch.allclose(so3_exp(omega), torch.linalg.matrix_exp(K), atol=1e-10)
    from utils.rendering.cameras import Cameras, orbit_cameras

    cams = orbit_cameras(2, 3.0, 8, 8)
    pose = PoseRefinement(2)
    with torch.no_grad():
        pose.deltas[1] = torch.tensor([0.05, -0.02, 0.1, 0.01, 0.2, -0.1])
    rays = generate_rays(cams)
    fixed = pose(rays, cams.camtoworlds)
    # the rays of the camera moved by c2w @ [R | t]
    R, t = pose.corrections(torch.tensor([1]))
    delta = torch.eye(4)
    delta[:3, :3], delta[:3, 3] = R[0], t[0]
    moved = Cameras(torch.linalg.inv(cams.camtoworlds[1] @ delta)[None], cams.Ks[1:], 8, 8)
    expect = generate_rays(moved)
    second = rays.camera_indices == 1
    assert torch.allclose(fixed.origins[second], expect.origins, atol=1e-5)
    assert torch.allclose(fixed.directions[second], expect.directions, atol=1e-5)
    assert torch.allclose(fixed.directions[~second], rays.directions[~second], atol=1e-6)


@pytest.mark.parametrize("preset", ["instant-ngp", "nerfacto"])
def test_a_colmap_capture_trains_as_an_unbounded_scene(preset, scene, tmp_path):
    """The built-in views as a COLMAP model: normalised, then grid cascades (instant-ngp) or contraction."""
    from PIL import Image

    from utils.data.colmap import ColmapCamera, ColmapImage, load_colmap, write_colmap_model

    train, _ = scene
    root = tmp_path / "capture"
    (root / "images").mkdir(parents=True)
    K = train.cameras.Ks[0]
    cams = {1: ColmapCamera(1, "PINHOLE", 16, 16, np.array([float(K[0, 0]), float(K[1, 1]), float(K[0, 2]),
                                                            float(K[1, 2])]))}
    ims = {}
    for i in range(len(train)):
        Image.fromarray((train.images[i].numpy() * 255).astype(np.uint8)).save(root / "images" / f"{i:03d}.png")
        vm = train.cameras.viewmats[i].double().numpy()
        from scipy.spatial.transform import Rotation

        x, y, z, w = Rotation.from_matrix(vm[:3, :3]).as_quat()
        ims[i + 1] = ColmapImage(i + 1, np.array([w, x, y, z]), vm[:3, 3], 1, f"{i:03d}.png")
    write_colmap_model(root / "sparse" / "0", cams, ims, np.random.default_rng(0).normal(size=(50, 3)) * 0.3,
                       np.full((50, 3), 128, np.uint8))
    data = load_colmap(root, "all")
    cfg, norm = fit_scene(replace(get_config(preset, "cpu"), **SMALL[preset]), data, True)
    assert cfg.unbounded and norm.scale != 1.0
    tc = replace(train_config(preset, "cpu"), steps=6, rays=64, target_samples=0)
    t = Trainer(preset, cfg, tc, data, None, tmp_path / "run", torch.device("cpu"), norm, tensorboard=False)
    if preset == "instant-ngp":
        assert t.model.grid.levels == 4 and cfg.cone_angle > 0
    hist = t.fit(progress=False, log_every=1)["history"]
    assert len(hist) == 6 and all(math.isfinite(h["loss"]) for h in hist) and hist[0]["samples"] > 0
    # rendered through the pipeline in world units: depth maps undo the normalisation's scale
    pipe = NeRFPipeline.from_pretrained(tmp_path / "run")
    out = pipe.render(pipe.train_cameras(8)[:1])
    assert out["rgb"].shape == (1, 8, 8, 3) and torch.isfinite(out["depth"]).all()
