"""Shap-E: presets, weights and per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

SPEC = ModelSpec(
    modality="3d", name="shap_e", package=__package__,
    summary="OpenAI's Shap-E: text- or image-conditioned latent diffusion of implicit functions, rendered as "
            "views (NeRF) and textured meshes (SDF + marching cubes).",
    pipeline="models.generation_3d.shap_e.pipeline:ShapEPipeline",
    presets=("text300M", "image300M", "tiny", "tiny-image"), default_preset="text300M",
    aliases=("shap-e", "shape_e"),
    paper="https://arxiv.org/abs/2305.02463",
    weights=(
        WeightsSource(preset="text300M", source="openai/shap-e", licence="MIT", layout="diffusers"),
        WeightsSource(preset="image300M", source="openai/shap-e-img2img", licence="MIT", layout="diffusers"),
    ),
    defaults={
        "*": {"steps": 64, "guidance_scale": 15.0, "frame_size": 64, "n_views": 20, "mesh_resolution": 128},
        "image300M": {"guidance_scale": 3.0},
        "tiny": {"steps": 2, "frame_size": 16, "n_views": 2, "mesh_resolution": 16},
        "tiny-image": {"steps": 2, "guidance_scale": 3.0, "frame_size": 16, "n_views": 2, "mesh_resolution": 16},
    },
)
