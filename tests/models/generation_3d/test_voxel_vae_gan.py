"""voxel_vae_gan: networks, losses, configs (the seed's YAML keys), and the pipeline."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.generation_3d.voxel_vae_gan.config import (PRESETS, build_configs, load_yaml_config, parse_bool,
                                                       resolve_config_path)
from models.generation_3d.voxel_vae_gan.losses import kl_divergence, kl_weight, weighted_bce
from models.generation_3d.voxel_vae_gan.model import VoxelVAEGAN, fuse
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("cube_len, image_size", [(16, 32), (32, 64)])
def test_shapes_at_each_resolution(cube_len, image_size):
    cfg = replace(PRESETS["tiny"], cube_len=cube_len, image_size=image_size, use_pose=True)
    torch.manual_seed(0)
    m = VoxelVAEGAN(cfg)
    views, poses = torch.rand(2, 3, 3, image_size, image_size), torch.randn(2, 3, 12)
    mu, logvar = m.encoder(views, poses)
    assert mu.shape == logvar.shape == (2, cfg.z_size)
    logits = m.generator(mu)
    assert logits.shape == (2, cube_len, cube_len, cube_len)
    assert m.discriminator(torch.sigmoid(logits)).shape == (2,)


def test_the_paper_sizes_build_64_cubed():
    with torch.device("meta"):
        m = VoxelVAEGAN(PRESETS["default"])
        out = m.generator(torch.zeros(1, 200, device="meta"))
    assert out.shape == (1, 64, 64, 64)
    n_g = sum(p.numel() for p in m.generator.parameters())
    assert 17_000_000 < n_g < 18_000_000  # 200-512-256-128-64-1, as in Wu et al.


def test_fusion_and_pose_change_the_code():
    torch.manual_seed(0)
    m = VoxelVAEGAN(replace(PRESETS["tiny"], use_pose=True)).eval()
    x, p = torch.rand(1, 3, 3, 32, 32), torch.randn(1, 3, 12)
    mu_v, _ = m.encoder.per_view(x, p)
    assert torch.allclose(m.encoder(x, p, "mean")[0], mu_v.mean(1), atol=1e-6)
    assert torch.allclose(m.encoder(x, p, "max")[0], mu_v.max(1).values)
    assert not torch.allclose(m.encoder(x, p)[0], m.encoder(x, torch.randn(1, 3, 12))[0])
    with pytest.raises(UserError, match="combine_type"):
        fuse(mu_v, "median")
    with pytest.raises(UserError, match="use_pose"):
        m.encoder(x, None)


def test_losses():
    logits, target = torch.randn(2, 8, 8, 8), (torch.rand(2, 8, 8, 8) > 0.7).float()
    assert torch.allclose(weighted_bce(logits, target, 0.5), F.binary_cross_entropy_with_logits(logits, target))
    only_pos = weighted_bce(logits, torch.ones_like(target), 0.9)
    assert torch.allclose(only_pos, 1.8 * F.binary_cross_entropy_with_logits(logits, torch.ones_like(target)))
    assert kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)) == 0
    assert torch.isclose(kl_divergence(torch.ones(3, 5), torch.zeros(3, 5)), torch.tensor(0.5))
    assert kl_weight(0.0, 0.1, 1.1) == 0.1 and kl_weight(0.5, 0.1, 1.1) == pytest.approx(0.6)
    assert kl_weight(2.0, 0.1, 1.1) == pytest.approx(1.1)


def test_the_seed_config_path_works_from_the_repo_root_and_elsewhere(tmp_path):
    shipped = ROOT / "models/generation_3d/voxel_vae_gan/configs/pose.yaml"
    cwd = os.getcwd()
    try:
        for where in (ROOT, tmp_path):
            os.chdir(where)
            assert resolve_config_path("config/pose.yaml").resolve() == shipped
            assert resolve_config_path("../config/pose.yaml").resolve() == shipped
    finally:
        os.chdir(cwd)
    values = load_yaml_config("config/pose.yaml")
    seed_keys = {"n_epochs", "batch_size", "z_size", "cube_len", "image_size", "obj", "num_views", "combine_type",
                 "use_pose", "g_lr", "e_lr", "d_lr", "recon_weight", "kl_weight_start", "kl_weight_end"}
    assert seed_keys <= set(values)
    model, train = build_configs(values)
    assert (model.cube_len, model.use_pose, train.num_views, train.combine_type) == (32, True, 4, "mean")
    # a file of the user's own wins over the shipped one
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "pose.yaml").write_text("num_views: 2\ncombine_type: max\n")
    _, train = build_configs(load_yaml_config(tmp_path / "config" / "pose.yaml"))
    assert (train.num_views, train.combine_type) == (2, "max")


def test_config_mistakes_are_one_line(tmp_path):
    (tmp_path / "a.yaml").write_text("num_view: 2\n")
    with pytest.raises(UserError, match="unknown key 'num_view'.*num_views"):
        load_yaml_config(tmp_path / "a.yaml")
    with pytest.raises(UserError, match="combine_type must be 'mean' or 'max'"):
        build_configs({"combine_type": "median"})
    with pytest.raises(UserError, match="num_views must be 1 or more"):
        build_configs({"num_views": 0})
    with pytest.raises(UserError, match="power of two"):
        build_configs({"cube_len": 48})
    with pytest.raises(UserError, match="not found"):
        resolve_config_path("config/nothing.yaml")
    assert parse_bool("True") and not parse_bool("false")


def test_pipeline_writes_grid_mesh_and_renders(tmp_path):
    from PIL import Image

    from models.generation_3d.voxel_vae_gan.pipeline import VoxelVAEGANPipeline
    from utils.data.binvox import read_binvox

    pipe = VoxelVAEGANPipeline.from_pretrained(preset="tiny")
    views = [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGB", (40, 30), (30, 30, 200))]
    out = pipe(images=views, threshold=0.5, render_size=32)
    assert out.voxels.shape == (16, 16, 16) and len(out.renders) == 4
    assert torch.equal(torch.from_numpy(out.voxels), torch.from_numpy(pipe(images=views).voxels))  # z = mu
    occupied = out.voxels > 0.5
    written = out.save(tmp_path / "shape")
    names = {p.name for p in written}
    assert {"result.binvox", "result.npy"} <= names
    assert (read_binvox(tmp_path / "shape" / "result.binvox").data == occupied).all()
    if occupied.any():
        assert {"result.obj", "result.ply"} <= names
    assert not torch.equal(torch.from_numpy(pipe(images=views, seed=1).voxels), torch.from_numpy(out.voxels))


def test_voxel_mesh_is_a_closed_sphere():
    from models.generation_3d.voxel_vae_gan.pipeline import voxel_mesh
    from utils.visualization.mesh import mesh_volume

    g = (torch.arange(24) + 0.5) / 24 * 2 - 1
    X, Y, Z = torch.meshgrid(g, g, g, indexing="ij")
    probs = ((X ** 2 + Y ** 2 + Z ** 2).sqrt() < 0.6).float().numpy()
    verts, faces = voxel_mesh(probs, 0.5)
    r = (verts ** 2).sum(1) ** 0.5
    assert abs(r.mean() - 0.6) < 0.05 and mesh_volume(verts, faces) == pytest.approx(4 / 3 * 3.14159 * 0.216, rel=0.1)


def test_voxel_renders_show_what_is_there():
    import numpy as np

    from utils.visualization.voxels import render_voxels, voxel_panel

    empty = np.asarray(render_voxels(np.zeros((16, 16, 16)), 32))
    assert (empty == 255).all()
    g = np.zeros((16, 16, 16))
    g[4:12, 4:12, 4:12] = 1
    cube = np.asarray(render_voxels(g, 32))
    assert (cube[16, 16] < 250).any() and (cube[0, 0] == 255).all()
    panel = voxel_panel([([torch.rand(3, 8, 8)] * 2, g, g)], size=20, gap=2)
    assert panel.size == (4 * 22 + 2, 24)


def test_weights_with_nan_are_refused_at_load(tmp_path):
    import json
    from dataclasses import asdict

    from safetensors.torch import save_file

    from models.generation_3d.voxel_vae_gan.pipeline import load_weights

    model = VoxelVAEGAN(PRESETS["tiny"])
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    weights["mean_shape"] = torch.zeros(16, 16, 16)
    meta = {"config": json.dumps(asdict(model.cfg), sort_keys=True), "format": "cv-generative"}
    save_file(weights, str(tmp_path / "good.safetensors"), metadata=meta)
    assert load_weights(tmp_path / "good.safetensors")[0].cfg == model.cfg
    name = next(k for k, v in weights.items() if v.is_floating_point() and k != "mean_shape")
    weights[name] = torch.full_like(weights[name], float("inf"))
    save_file(weights, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(UserError, match=f"Inf values \\(first in tensor '{name}'\\)"):
        load_weights(tmp_path / "bad.safetensors")
