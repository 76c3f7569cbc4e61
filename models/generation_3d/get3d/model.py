"""GET3D's generator in nv-tlabs' module layout (training/networks_get3d.py GeneratorDMTETMesh), so that
the released G / G_ema state dicts load key for key:

- `mapping` (texture latents, num_ws = the triplane network's texture ws + the texture MLP's) and
  `mapping_geo` (geometry latents), both StyleGAN2 mapping networks (utils/nn/stylegan/mapping.py);
- `synthesis.generator`: the triplane generator and its decoders (layers.py, TriPlaneTexGeo);
- `synthesis.to_rgb`: the ToRGB layer from `feat_channel` texture features to colours (when > 3).

`GET3DGenerator.generate_meshes(z_geo, z_tex)` maps the latents, draws the triplanes, and extracts one
DMTet mesh per sample on the tetrahedral grid (regular, or GET3D's .npz grid when given).
"""
from __future__ import annotations

from torch import Tensor, nn

from models.generation_3d.get3d.config import GET3DConfig
from models.generation_3d.get3d.geometry import extract_meshes, sdf_and_deformation
from models.generation_3d.get3d.layers import TriPlaneTexGeo
from utils.nn.stylegan.mapping import MappingNetwork
from utils.nn.stylegan.stylegan2 import ToRGBLayer
from utils.rendering.dmtet import TetGrid, regular_tet_grid

__all__ = ["GET3DGenerator", "GET3DSynthesis"]


class GET3DSynthesis(nn.Module):
    """Holds the triplane generator (`generator`) and the feature-to-colour layer (`to_rgb`)."""

    def __init__(self, cfg: GET3DConfig, grid: TetGrid):
        super().__init__()
        lo, hi = float(grid.verts.min()), float(grid.verts.max())
        self.generator = TriPlaneTexGeo(cfg.w_dim, cfg.feat_channel, tri_plane_resolution=cfg.tri_plane_resolution,
                                        shape_min=lo, shape_lenght=hi - lo,
                                        mlp_latent_channel=cfg.mlp_latent_channel,
                                        n_implicit_layer=cfg.n_implicit_layer, channel_base=cfg.channel_base,
                                        channel_max=cfg.channel_max)
        if cfg.feat_channel > 3:
            self.to_rgb = ToRGBLayer(cfg.feat_channel, cfg.img_channels, w_dim=cfg.w_dim, conv_clamp=256)


class GET3DGenerator(nn.Module):
    """Two mapping networks and the DMTet synthesis network; see the module docstring."""

    def __init__(self, cfg: GET3DConfig, grid: TetGrid | None = None):
        super().__init__()
        self.cfg = cfg
        self.grid = grid if grid is not None else regular_tet_grid(cfg.tet_res, scale=cfg.dmtet_scale)
        self.synthesis = GET3DSynthesis(cfg, self.grid)
        gen = self.synthesis.generator
        self.num_ws, self.num_ws_geo = gen.num_ws_tex, gen.num_ws_geo
        mapping = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_layers=cfg.mapping_layers)
        self.mapping = MappingNetwork(num_ws=self.num_ws, **mapping)
        self.mapping_geo = MappingNetwork(num_ws=self.num_ws_geo, **mapping)

    def generate_meshes(self, z_geo: Tensor, z_tex: Tensor, c: Tensor | None = None, truncation_psi: float = 1.0
                        ) -> tuple[list[tuple[Tensor, Tensor]], dict]:
        """Meshes [(verts (V, 3), faces (F, 3))] per sample, and the intermediate tensors of the step."""
        ws = self.mapping(z_tex, c, truncation_psi=truncation_psi)
        ws_geo = self.mapping_geo(z_geo, c, truncation_psi=truncation_psi)
        gen = self.synthesis.generator
        n_tex, n_geo = gen.tri_plane_synthesis.num_ws_tex, gen.tri_plane_synthesis.num_ws_geo
        sdf_feature, tex_feature = gen.get_feature(ws[:, :n_tex], ws_geo[:, :n_geo])
        grid = self.grid.to(sdf_feature.device)
        sdf, deformation, sdf_reg = sdf_and_deformation(gen, sdf_feature, ws_geo[:, n_geo:], grid, self.cfg.tet_res,
                                                        self.cfg.deformation_multiplier)
        meshes, deformed = extract_meshes(grid, sdf, deformation)
        return meshes, {"ws": ws, "ws_geo": ws_geo, "sdf": sdf, "deformation": deformation, "sdf_reg": sdf_reg,
                        "tex_feature": tex_feature, "v_deformed": deformed}
