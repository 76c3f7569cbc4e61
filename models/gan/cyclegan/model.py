"""CycleGAN networks (Zhu et al. 2017): a ResNet generator and a 70x70 PatchGAN discriminator.

Module indices follow the original PyTorch release (junyanz/pytorch-CycleGAN-and-pix2pix,
networks.py), whose latest_net_G_A.pth files load without renaming: the generator is one
`model` Sequential (reflection pad, 7x7 conv, two stride-2 convs, residual blocks with
`conv_block` Sequentials, two transposed convs, reflection pad, 7x7 conv, tanh); the PatchGAN is
another. Instance norm without affine parameters, so convolutions keep their biases.
"""
from __future__ import annotations

import torch
from torch import nn

from models.gan.cyclegan.config import CycleGANConfig


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """The original's default init ('normal', gain 0.02): N(0, 0.02) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResnetBlock(nn.Module):
    """x + [pad, conv3x3, IN, ReLU, (dropout), pad, conv3x3, IN](x)."""

    def __init__(self, dim: int, use_dropout: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """image (B, in, H, W) -> image (B, out, H, W) in [-1, 1]; H and W divisible by 4."""

    def __init__(self, config: CycleGANConfig):
        super().__init__()
        self.config = config
        ngf = config.ngf
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(config.in_channels, ngf, 7), nn.InstanceNorm2d(ngf),
                                   nn.ReLU(True)]
        for mult in (1, 2):  # two stride-2 downsamplings
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, config.use_dropout) for _ in range(config.n_blocks)]
        for mult in (4, 2):  # two stride-2 upsamplings back to the input size
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, config.out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN (NLayerDiscriminator): one real/fake logit per overlapping 70x70 patch (30x30 map at 256x256)."""

    def __init__(self, config: CycleGANConfig, in_channels: int | None = None):
        super().__init__()
        ndf, n = config.ndf, config.n_layers_d
        ch = config.out_channels if in_channels is None else in_channels
        layers: list[nn.Module] = [nn.Conv2d(ch, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for i in range(1, n + 1):
            prev, mult = mult, min(2 ** i, 8)
            stride = 2 if i < n else 1  # the last widening conv keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ImagePool(nn.Module):
    """The history of generated images the discriminators train on (Shrivastava et al. 2017), 50 by default.

    Until full, each new image is stored and returned. Once full, with probability 1/2 the new image
    is returned as is; otherwise a random stored image is returned and replaced by the new one.
    The pool lives in buffers, so it is saved with the discriminators and a resumed run continues
    with the same history.
    """

    def __init__(self, pool_size: int, image_shape: tuple[int, ...]):
        super().__init__()
        self.pool_size = pool_size
        self.register_buffer("images", torch.zeros(pool_size, *image_shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pool_size == 0:
            return images.detach()
        out = []
        for image in images.detach():
            n = int(self.count)
            if n < self.pool_size:
                self.images[n] = image
                self.count += 1
                out.append(image)
            elif float(torch.rand((), generator=generator)) > 0.5:
                idx = int(torch.randint(0, self.pool_size, (), generator=generator))
                out.append(self.images[idx].clone())
                self.images[idx] = image
            else:
                out.append(image)
        return torch.stack(out)


class CycleGenerators(nn.Module):
    """G_A: A -> B and G_B: B -> A, run together so one forward feeds one backward (DDP-friendly)."""

    def __init__(self, config: CycleGANConfig):
        super().__init__()
        self.config = config
        self.G_A = ResnetGenerator(config)
        self.G_B = ResnetGenerator(CycleGANConfig(**{**config.__dict__, "in_channels": config.out_channels,
                                                     "out_channels": config.in_channels}))

    def forward(self, real_a: torch.Tensor, real_b: torch.Tensor, identity: bool = True) -> dict[str, torch.Tensor]:
        fake_b, fake_a = self.G_A(real_a), self.G_B(real_b)
        out = {"fake_b": fake_b, "rec_a": self.G_B(fake_b), "fake_a": fake_a, "rec_b": self.G_A(fake_a)}
        if identity:  # G_A fed a B image should leave it alone (and G_B an A image)
            out["idt_a"], out["idt_b"] = self.G_A(real_b), self.G_B(real_a)
        return out


class CycleDiscriminators(nn.Module):
    """D_A judges domain B (real B vs G_A's fakes), D_B judges domain A; each keeps its pool of fakes."""

    def __init__(self, config: CycleGANConfig, pool_size: int = 50):
        super().__init__()
        self.config = config
        self.D_A = PatchDiscriminator(config, config.out_channels)
        self.D_B = PatchDiscriminator(config, config.in_channels)
        size = config.image_size
        self.pool_fake_b = ImagePool(pool_size, (config.out_channels, size, size))
        self.pool_fake_a = ImagePool(pool_size, (config.in_channels, size, size))

    def forward(self, b: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.D_A(b), self.D_B(a)
