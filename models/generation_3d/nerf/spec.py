"""Neural radiance fields: presets, weights and per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="3d", name="nerf", package=__package__,
    summary="Neural radiance fields: NeRF, mip-NeRF, Instant-NGP and nerfacto, trained on posed images; "
            "renders, depth, meshes and point clouds.",
    pipeline="models.generation_3d.nerf.pipeline:NeRFPipeline",
    presets=("instant-ngp", "nerfacto", "mipnerf", "vanilla", "tiny"), default_preset="instant-ngp",
    aliases=("radiance_field",),
    paper="https://arxiv.org/abs/2003.08934",
)
