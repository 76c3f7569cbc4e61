"""Multi-view 3D-VAE-GAN: presets and defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="3d", name="voxel_vae_gan", package=__package__,
    summary="Multi-view 3D-VAE-GAN (Wu et al. 2016 + view fusion and pose encoding): voxel shapes from sparse "
            "posed 2D views, trained on the CO3D layout.",
    pipeline="models.generation_3d.voxel_vae_gan.pipeline:VoxelVAEGANPipeline",
    presets=("pose", "default", "tiny"), default_preset="pose",
    aliases=("3d_vae_gan", "vae_gan_3d", "multiview_3d_vae_gan"),
    paper="https://arxiv.org/abs/1610.07584",
    defaults={"*": {"threshold": 0.5, "render_size": 128}},
)
