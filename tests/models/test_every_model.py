"""Every registered model runs through the facade with `preset="tiny"` and a seed, offline, and saves.

A model added to the registry without an entry in CALLS fails here unless it is a latent GAN,
which needs no inputs: each model must be runnable from the facade without weights.

Determinism is checked against a pipeline loaded afresh (`cache=False`), so a result cannot come
from one shared object: the facade's cached pipeline and a separately built one give the same
output for the same seed, and another seed gives another output. Pipelines that are deterministic by design (a translation,
a reconstruction, a render of given splats) are listed in SEEDLESS with the input that changes
their output instead; for them, the seed is checked to change nothing.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import models
from models.gan.pipeline_base import LatentGANPipeline
from utils.outputs import ImageOutput, Output3D, VideoOutput
from models.registry import MODELS

IMAGE = Image.new("RGB", (32, 32), (120, 30, 60))
OTHER_IMAGE = Image.new("RGB", (32, 32), (20, 160, 220))
CALLS = {
    "flux": dict(prompt="a red fox in snow", steps=2),
    "sdxl": dict(prompt="a red fox in snow", steps=2),
    "sd15": dict(prompt="a red fox in snow", steps=2),
    "sd3": dict(prompt="a red fox in snow", steps=2),
    "imagen": dict(prompt="a red fox in snow", steps=2, sr_steps=1, upscale_steps=1),
    "dalle3": dict(prompt="a red fox in snow", steps=2),
    "cyclegan": dict(image=IMAGE),
    "esrgan": dict(image=IMAGE),
    "srgan": dict(image=IMAGE),
    "vqgan": dict(image=IMAGE),
    "biggan": dict(num_images=2, prompt="3"),
    "aetherist": dict(num_images=2, azimuth=30.0),
    "gaussian_splatting": dict(n_views=2, width=32),
    "nerf": dict(n_views=2, width=16, mesh_resolution=12, mesh_threshold=1.0),
    "voxel_vae_gan": dict(images=[IMAGE, OTHER_IMAGE], render_size=32),
    "shap_e": dict(prompt="a red chair"),
    "point_e": dict(prompt="a red motorcycle", mesh=True),
    "get3d": dict(n_views=2, render_size=24),
    "svd": dict(image=IMAGE, progress=False),
    "sora": dict(prompt="a red fox runs through snow", progress=False),
    "luma_dream": dict(prompt="a red fox runs through snow", steps=2, progress=False),
    "runway_gen3": dict(prompt="a red fox runs through snow", image=IMAGE, progress=False),
}


def _other_splats(out: Output3D, tmp_path: Path) -> dict:
    """The same scene with other colours, as a .ply: what changes a splat render."""
    from utils.visualization.ply import read_splat_ply, write_splat_ply

    ply = next(p for p in out.save(tmp_path / "scene") if p.suffix == ".ply")
    splats = read_splat_ply(ply)
    splats["sh0"] = splats["sh0"] + 0.8
    return dict(ply=write_splat_ply(tmp_path / "other.ply", splats))


# name -> the input that changes the output of a pipeline the seed does not change
SEEDLESS = {
    "cyclegan": lambda out, tmp_path: dict(image=OTHER_IMAGE),
    "esrgan": lambda out, tmp_path: dict(image=OTHER_IMAGE),
    "srgan": lambda out, tmp_path: dict(image=OTHER_IMAGE),
    "vqgan": lambda out, tmp_path: dict(image=OTHER_IMAGE),
    "gaussian_splatting": _other_splats,
    "nerf": lambda out, tmp_path: dict(elevation=70.0),  # a render of a given field: the camera changes it
}


def _pixels(out) -> torch.Tensor:
    frames = out.images if isinstance(out, ImageOutput) else out.renders if isinstance(out, Output3D) else out.frames[0]
    return torch.stack([torch.tensor(list(im.convert("RGB").getdata())) for im in frames])


@pytest.mark.parametrize("spec", MODELS, ids=[f"{s.modality}/{s.name}" for s in MODELS])
def test_tiny_preset_through_the_facade_is_seeded(spec, tmp_path):
    if spec.name not in CALLS:
        assert issubclass(spec.pipeline_class(), LatentGANPipeline), f"add a CALLS entry for {spec.name}"
    kwargs = CALLS.get(spec.name, dict(num_images=2))
    out = models.generate(spec.modality, spec.name, preset="tiny", seed=1, **kwargs)
    assert isinstance(out, (ImageOutput, VideoOutput, Output3D))
    written = out.save(tmp_path / "out")
    assert written and all(p.is_file() and p.stat().st_size > 0 for p in written)

    reference = _pixels(out)
    fresh = models.load(spec.modality, spec.name, preset="tiny", cache=False)
    assert fresh is not models.load(spec.modality, spec.name, preset="tiny")  # built anew, not the cached one
    assert torch.equal(_pixels(fresh(seed=1, **kwargs)), reference), \
        "a freshly loaded pipeline must give the cached one's output for the same seed"
    if spec.name in SEEDLESS:
        assert torch.equal(_pixels(fresh(seed=2, **kwargs)), reference), f"{spec.name} is documented as seedless"
        changed = fresh(seed=1, **{**kwargs, **SEEDLESS[spec.name](out, tmp_path)})
    else:
        changed = fresh(seed=2, **kwargs)
    assert not torch.equal(_pixels(changed), reference), \
        "another seed (or, for a seedless pipeline, another input) must change the output"
