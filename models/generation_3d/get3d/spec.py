"""GET3D: presets, weights and per-preset defaults (torch-free; the registry reads it).

The released checkpoints (huggingface.co/JunGaoNVIDIA/get3d-ckpt) are CC BY-NC-SA 4.0 according to the
release page (pretrained_model/README.md of nv-tlabs/GET3D); nv-tlabs' code is under the NVIDIA Source
Code License (non-commercial). The table checkpoint shares the chair's architecture (dmtet_scale 0.8).
"""
from models.spec import ModelSpec, WeightsSource

WEIGHTS_REPO = "JunGaoNVIDIA/get3d-ckpt"
"""The hub repo of nv-tlabs' released checkpoints."""
WEIGHTS_LICENCE = "CC BY-NC-SA 4.0"
"""The licence of the released weights (non-commercial); nv-tlabs' code is under the NVIDIA Source Code License."""

SPEC = ModelSpec(
    modality="3d", name="get3d", package=__package__,
    summary="NVIDIA's GET3D: a GAN of textured meshes (triplane SDF + DMTet geometry, a texture field, a "
            "differentiable rasterizer), exported as .obj/.mtl/.png and .glb with a UV atlas.",
    pipeline="models.generation_3d.get3d.pipeline:GET3DPipeline",
    presets=("shapenet-car", "shapenet-chair", "shapenet-motorbike", "shapenet-table", "tiny"),
    default_preset="shapenet-car",
    aliases=("get-3d",),
    paper="https://arxiv.org/abs/2209.11163",
    weights=tuple(WeightsSource(preset=f"shapenet-{c}", source=WEIGHTS_REPO, file=f"shapenet_{c}.pt",
                                licence=WEIGHTS_LICENCE) for c in ("car", "chair", "motorbike", "table")),
    defaults={
        "*": {"n_views": 8, "render_size": 512, "texture_size": 1024, "elevation": 20.0, "truncation_psi": 1.0},
        "tiny": {"n_views": 2, "render_size": 32, "texture_size": 32},
    },
)
