"""GET3D generator configurations (the fields of nv-tlabs' G_kwargs that shape the network)."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class GET3DConfig:
    """Sizes of GET3D's generator (one_3d_generator=True, DMTet iso-surface)."""

    z_dim: int = 512
    """Dimension of each latent code (geometry and texture have one each); `--latent_dim`."""
    w_dim: int = 512
    """Dimension of the intermediate latents w; `--latent_dim`."""
    c_dim: int = 0
    """Label dimension (0: unconditional, as every released model)."""
    mapping_layers: int = 8
    """Fully connected layers of each mapping network."""
    img_resolution: int = 1024
    """Rendered image size the model was trained at; `--img_res`."""
    img_channels: int = 3
    """Colour channels of the rendered image."""
    tri_plane_resolution: int = 256
    """Side of each triplane feature map (a power of two); `--tri_plane_resolution`."""
    feat_channel: int = 16
    """Texture-field output channels; a ToRGB layer maps them to colours when > 3; `--feat_channel`."""
    mlp_latent_channel: int = 32
    """Width of the SDF / deformation / texture MLPs; `--mlp_latent_channel`."""
    n_implicit_layer: int = 1
    """Hidden layers of each of those MLPs; `--n_implicit_layer`."""
    channel_base: int = 32768
    """StyleGAN2 channel multiplier of the triplane synthesis network; `--cbase`."""
    channel_max: int = 512
    """Most channels of any synthesis layer; `--cmax`."""
    tet_res: int = 90
    """Resolution of the tetrahedral grid (GET3D ships 64, 70, 80, 90, 100); `--tet_res`."""
    dmtet_scale: float = 1.0
    """Side of the cube the grid spans (1.0 cars and motorbikes, 0.8 chairs); `--dmtet_scale`."""
    deformation_multiplier: float = 1.0
    """Deformations are tanh(d) / (tet_res * deformation_multiplier); `--deformation_multiplier`."""

    def to_dict(self) -> dict:
        return asdict(self)


RELEASED = {
    "shapenet-car": GET3DConfig(dmtet_scale=1.0),
    "shapenet-motorbike": GET3DConfig(dmtet_scale=1.0),
    "shapenet-chair": GET3DConfig(dmtet_scale=0.8),
}
"""The architecture of nv-tlabs' released checkpoints (train_3d.py defaults plus the README's commands)."""

TINY = GET3DConfig(z_dim=16, w_dim=16, mapping_layers=2, img_resolution=32, tri_plane_resolution=8, feat_channel=3,
                   mlp_latent_channel=16, n_implicit_layer=1, channel_base=128, channel_max=32, tet_res=8,
                   dmtet_scale=1.8, deformation_multiplier=2.0)
"""A CPU-sized configuration for tests."""
