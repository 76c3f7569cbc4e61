"""One GET3D training step (no loop, CLI or checkpointing yet): the generator draws a mesh per sample,
renders it from the real views' cameras, colours the covered pixels with the texture field, and the
discriminator scores [RGB, mask] images conditioned on the camera angles; the losses are losses.py's.
R1 runs every step here (GET3D runs it lazily every 16 steps; the `r1_every` argument).
"""
from __future__ import annotations

import torch
from torch import Tensor

from models.generation_3d.get3d.discriminator import GET3DDiscriminator
from models.generation_3d.get3d.losses import (
    discriminator_loss,
    generator_loss,
    r1_loss,
)
from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.primitives import camera_from_angles
from models.generation_3d.get3d.render import render_mesh, texture_image
from utils.rendering.dmtet import tet_edges

__all__ = ["fake_images", "train_step"]


def fake_images(G: GET3DGenerator, z_geo: Tensor, z_tex: Tensor, angles: Tensor, resolution: int) -> tuple[Tensor, dict]:
    """[RGB (or texture features), soft mask] images (B, C + 1, R, R) of the generated shapes seen at `angles` (B, 2)."""
    meshes, aux = G.generate_meshes(z_geo, z_tex)
    mv = camera_from_angles(angles[:, 0], angles[:, 1]).to(z_geo)
    rendered = [render_mesh(v, f, mv[i:i + 1], resolution) for i, (v, f) in enumerate(meshes)]
    tex_pos = torch.cat([r["tex_pos"] for r in rendered])
    hard = torch.cat([r["hard_mask"] for r in rendered])
    soft = torch.cat([r["mask"] for r in rendered])
    rgb = texture_image(G, aux["tex_feature"], aux["ws"], tex_pos, hard)
    return torch.cat([rgb, soft.permute(0, 3, 1, 2)], 1), aux


def train_step(G: GET3DGenerator, D: GET3DDiscriminator, opt_g, opt_d, real: Tensor, angles: Tensor,
               r1_gamma: float = 40.0, gamma_mask: float = 40.0, step: int = 0, r1_every: int = 1,
               generator: torch.Generator | None = None) -> dict:
    """One D step then one G step on real [RGB, mask] images (B, C + 1, R, R) with their camera angles (B, 2)."""
    b, res = real.shape[0], real.shape[-1]
    edges = tet_edges(G.grid.tets)

    def latents():
        # drawn on the CPU (a seed means the same latents on every device), then moved to the data's device
        return (torch.randn(b, G.cfg.z_dim, generator=generator).to(real.device),
                torch.randn(b, G.cfg.z_dim, generator=generator).to(real.device))

    opt_d.zero_grad(set_to_none=True)
    with torch.no_grad():
        fake, _ = fake_images(G, *latents(), angles, res)
    real_in = real.detach().requires_grad_(True)
    real_rgb, real_mask = D(real_in, angles)
    fake_rgb, fake_mask = D(fake, angles)
    loss_d = discriminator_loss(real_rgb, real_mask, fake_rgb, fake_mask)
    if r1_every and step % r1_every == 0:
        loss_d = loss_d + r1_loss(real_in, real_rgb, real_mask, r1_gamma, gamma_mask) * r1_every
    loss_d.backward()
    opt_d.step()

    opt_g.zero_grad(set_to_none=True)
    fake, aux = fake_images(G, *latents(), angles, res)
    fake_rgb, fake_mask = D(fake, angles)
    loss_g = generator_loss(fake_rgb, fake_mask, aux["sdf"], edges, aux["sdf_reg"])
    loss_g.backward()
    opt_g.step()
    return {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach())}
