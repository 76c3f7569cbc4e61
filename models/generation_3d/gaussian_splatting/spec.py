"""3D Gaussian splatting: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="3d", name="gaussian_splatting", package=__package__,
    summary="3D Gaussian splatting (Kerbl et al. 2023): train on posed images, render and export .ply splats.",
    pipeline="models.generation_3d.gaussian_splatting.pipeline:GaussianSplattingPipeline",
    presets=("default", "tiny"), default_preset="default", aliases=("3dgs", "gsplat"),
    paper="https://arxiv.org/abs/2308.04079",
)
