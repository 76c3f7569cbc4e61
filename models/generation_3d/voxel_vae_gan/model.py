"""The networks of the multi-view 3D-VAE-GAN (Wu et al. 2016, extended to several posed views).

    views (B, V, 3, S, S) --ImageEncoder--> features --(+ PoseEncoder(pose))--> (mu, logvar) per view
        --fuse over V (mean | max)--> (mu, logvar) --z = mu + sigma * eps--> Generator --> (B, L, L, L) logits
    Discriminator: (B, L, L, L) occupancy in [0, 1] --> (B,) real/fake logits
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from models.generation_3d.voxel_vae_gan.config import COMBINE_TYPES, VoxelVAEGANConfig
from utils.errors import UserError

__all__ = ["ImageEncoder", "PoseEncoder", "MultiViewEncoder", "Generator", "Discriminator", "VoxelVAEGAN", "fuse"]


class ImageEncoder(nn.Module):
    """A view to a feature vector: stride-2 4x4 convolutions (BN, LeakyReLU) down to 4x4, flattened."""

    def __init__(self, cfg: VoxelVAEGANConfig):
        super().__init__()
        layers, c_in = [], 3
        for i in range(int(math.log2(cfg.image_size // 4))):
            c_out = min(cfg.enc_channels * 2 ** i, cfg.enc_max)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c_out)] if i > 0 else []
            layers += [nn.LeakyReLU(cfg.leak)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.out_features = c_in * 16

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x * 2 - 1).flatten(1)


class PoseEncoder(nn.Module):
    """A camera pose vector to an embedding (two linear layers)."""

    def __init__(self, cfg: VoxelVAEGANConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.pose_dim, cfg.pose_embed)
        self.fc2 = nn.Linear(cfg.pose_embed, cfg.pose_embed)

    def forward(self, pose: Tensor) -> Tensor:
        return torch.relu(self.fc2(torch.relu(self.fc1(pose))))


def fuse(x: Tensor, combine_type: str) -> Tensor:
    """Combine per-view codes (B, V, Z) into one (B, Z): their mean or their element-wise max."""
    if combine_type == "mean":
        return x.mean(1)
    if combine_type == "max":
        return x.max(1).values
    raise UserError(f"combine_type must be one of {', '.join(COMBINE_TYPES)}, got '{combine_type}'")


class MultiViewEncoder(nn.Module):
    """Views (+ poses) to one (mu, logvar): each view encoded alone, the codes fused over views."""

    def __init__(self, cfg: VoxelVAEGANConfig):
        super().__init__()
        self.cfg = cfg
        self.image = ImageEncoder(cfg)
        self.pose = PoseEncoder(cfg) if cfg.use_pose else None
        width = self.image.out_features + (cfg.pose_embed if cfg.use_pose else 0)
        self.hidden = nn.Linear(width, cfg.enc_hidden)
        self.to_mu = nn.Linear(cfg.enc_hidden, cfg.z_size)
        self.to_logvar = nn.Linear(cfg.enc_hidden, cfg.z_size)

    def per_view(self, images: Tensor, poses: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(mu, logvar), each (B, V, Z), of views (B, V, 3, S, S) and poses (B, V, pose_dim)."""
        B, V = images.shape[:2]
        h = self.image(images.flatten(0, 1))
        if self.pose is not None:
            if poses is None:
                raise UserError("this model was trained with use_pose: give a camera pose for every view")
            h = torch.cat([h, self.pose(poses.flatten(0, 1).to(h.dtype))], -1)
        h = nn.functional.leaky_relu(self.hidden(h), self.cfg.leak)
        return self.to_mu(h).unflatten(0, (B, V)), self.to_logvar(h).unflatten(0, (B, V))

    def forward(self, images: Tensor, poses: Tensor | None = None, combine_type: str = "mean") -> tuple[Tensor, Tensor]:
        mu, logvar = self.per_view(images, poses)
        return fuse(mu, combine_type), fuse(logvar, combine_type)


class Generator(nn.Module):
    """z to occupancy logits: a 4x4x4 transposed convolution from z, then stride-2 ones up to cube_len."""

    def __init__(self, cfg: VoxelVAEGANConfig):
        super().__init__()
        n_up = int(math.log2(cfg.cube_len // 4))
        chans = [max(cfg.gen_channels // 2 ** i, cfg.gen_min) for i in range(n_up)]
        self.stem = nn.Sequential(nn.ConvTranspose3d(cfg.z_size, chans[0], 4, 1, 0, bias=False),
                                  nn.BatchNorm3d(chans[0]), nn.ReLU())
        ups = []
        for i in range(n_up):
            last = i == n_up - 1
            c_out = 1 if last else chans[i + 1]
            ups += [nn.ConvTranspose3d(chans[i], c_out, 4, 2, 1, bias=last)]
            ups += [] if last else [nn.BatchNorm3d(c_out), nn.ReLU()]
        self.ups = nn.Sequential(*ups)

    def forward(self, z: Tensor) -> Tensor:
        return self.ups(self.stem(z[:, :, None, None, None]))[:, 0]


class Discriminator(nn.Module):
    """Occupancy grids to real/fake logits: stride-2 4x4x4 convolutions to 4^3, then a 4x4x4 one to 1."""

    def __init__(self, cfg: VoxelVAEGANConfig):
        super().__init__()
        layers, c_in = [], 1
        for i in range(int(math.log2(cfg.cube_len // 4))):
            c_out = min(cfg.disc_channels * 2 ** i, cfg.disc_max)
            layers += [nn.Conv3d(c_in, c_out, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm3d(c_out)] if i > 0 else []
            layers += [nn.LeakyReLU(cfg.leak)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv3d(c_in, 1, 4, 1, 0)

    def forward(self, voxels: Tensor) -> Tensor:
        return self.out(self.convs(voxels[:, None] * 2 - 1)).flatten()


class VoxelVAEGAN(nn.Module):
    """The three networks together (what a checkpoint holds)."""

    def __init__(self, cfg: VoxelVAEGANConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = MultiViewEncoder(cfg)
        self.generator = Generator(cfg)
        self.discriminator = Discriminator(cfg)

    def reconstruct(self, images: Tensor, poses: Tensor | None = None, combine_type: str = "mean",
                    generator: torch.Generator | None = None) -> Tensor:
        """Occupancy probabilities (B, L, L, L) of views; z = mu, or a draw from N(mu, sigma) with `generator`."""
        mu, logvar = self.encoder(images, poses, combine_type)
        z = mu
        if generator is not None:
            eps = torch.randn(mu.shape, generator=generator).to(mu.device, mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.generator(z))
