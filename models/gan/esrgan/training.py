"""Super-resolution training as train_gan.py step hooks: pairs made on the fly from high-resolution crops.

    python train/train_gan.py --model srgan --data FOLDER            # SRGAN: MSE + VGG54 + adversarial
    python train/train_gan.py --model esrgan --preset realesrgan-x4plus --data FOLDER

Each step degrades the batch's HR crops into LR inputs (`utils.data.degradations.degrade`: bicubic for SRGAN
and ESRGAN, Real-ESRGAN's second-order model for the Real-ESRGAN presets, from the unsharp-masked crop), then
- the generator minimises  w_pix * pixel + w_vgg * VGG perceptual + w_gan * adversarial;
- the discriminator separates HR crops from super-resolved ones (per-pixel for the U-Net).
Weights: SRGAN (Ledig et al. 2017) MSE 1, VGG54 (MSE) 0.006, adversarial 1e-3, Adam 1e-4;
ESRGAN (Wang et al. 2018; BasicSR's train_ESRGAN_x4.yml) L1 1e-2, VGG conv5_4 (L1, before ReLU) 1,
relativistic average adversarial 5e-3; Real-ESRGAN's train_realesrgan_x4plus.yml: L1 1, perceptual 1,
vanilla (BCE) adversarial 0.1 with the U-Net discriminator, L1 / VGG against the unsharp-masked crop,
Adam 1e-4 betas (0.9, 0.99), EMA 0.999.
The `tiny` presets train with a narrow random VGG (nothing to download); the others read torchvision's
ImageNet VGG19 file (`utils/gan/perceptual.py` says where it goes).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.gan.esrgan.config import RRDB_PRESETS, SRRESNET_PRESETS
from models.gan.esrgan.discriminator import build_discriminator
from models.gan.esrgan.model import build_generator
from utils.gan.recipe import GANRecipe, StepContext


@dataclass(frozen=True)
class SRLossWeights:
    """The generator's loss terms and how the LR inputs are made."""

    pixel: float
    """Weight of the pixel loss."""
    pixel_criterion: str
    """'l1' (ESRGAN family) or 'mse' (SRGAN)."""
    perceptual: float
    """Weight of the VGG feature loss."""
    perceptual_criterion: str
    """'l1' or 'mse' between VGG features."""
    adversarial: float
    """Weight of the generator's adversarial term."""
    degradation_order: int
    """0: bicubic only, 1: one blur/resize/noise/JPEG round, 2: Real-ESRGAN's second order."""
    gan_loss: str = "non_saturating"
    """utils.gan.losses name: 'ragan' (ESRGAN's relativistic average) or 'non_saturating' (vanilla BCE)."""
    perceptual_layers: tuple[tuple[str, float], ...] = (("conv5_4", 1.0),)
    """VGG19 taps and their weights (before ReLU): conv5_4 alone (SRGAN, ESRGAN) or Real-ESRGAN's five."""
    usm_target: bool = False
    """Real-ESRGAN: unsharp-mask the HR crop, degrade the sharpened one, and use it as the L1 / VGG target
    (the GAN sees the plain crop: l1_gt_usm, percep_gt_usm True, gan_gt_usm False)."""


SRGAN_WEIGHTS = SRLossWeights(1.0, "mse", 0.006, "mse", 1e-3, 0)
ESRGAN_WEIGHTS = SRLossWeights(1e-2, "l1", 1.0, "l1", 5e-3, 0, gan_loss="ragan")
"""BasicSR's train_ESRGAN_x4.yml: bicubic pairs, ESRGANModel's relativistic average loss."""
REAL_ESRGAN_LAYERS = (("conv1_2", 0.1), ("conv2_2", 0.1), ("conv3_4", 1.0), ("conv4_4", 1.0), ("conv5_4", 1.0))
REAL_ESRGAN_WEIGHTS = SRLossWeights(1.0, "l1", 1.0, "l1", 0.1, 2, gan_loss="non_saturating",
                                    perceptual_layers=REAL_ESRGAN_LAYERS, usm_target=True)
"""train_realesrgan_x4plus.yml: the vanilla GAN (BCE) with the U-Net discriminator."""
REAL_ESRNET_WEIGHTS = SRLossWeights(1.0, "l1", 0.0, "l1", 0.0, 2, usm_target=True)
"""train_realesrnet_x4plus.yml: Real-ESRNet, the L1-only (PSNR) stage whose weights start Real-ESRGAN's GAN
training: the same degradations, L1 1 against the USM-sharpened crop, no VGG, no discriminator step."""


def sr_recipe(config, weights: SRLossWeights, tiny: bool, batch_size: int, steps: int, lr_g: float = 1e-4) -> GANRecipe:
    from utils.gan.perceptual import VGGPerceptualLoss

    generator = build_generator(config)
    lo, hi = generator.value_range
    channels = getattr(config, "out_channels", getattr(config, "channels", 3))
    psnr_only = weights.perceptual == 0 and weights.adversarial == 0
    vgg = None if psnr_only else VGGPerceptualLoss(criterion=weights.perceptual_criterion, pretrained=not tiny,
                                                   width=0.125 if tiny else 1.0,
                                                   layer_weights=dict(weights.perceptual_layers))
    shown: dict[str, torch.Tensor] = {}

    def to_net(x01: torch.Tensor) -> torch.Tensor:
        return x01 * (hi - lo) + lo

    def to_01(x: torch.Tensor) -> torch.Tensor:
        return (x - lo) / (hi - lo)

    def pair(batch: dict, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        from utils.data.degradations import degrade, usm_sharp
        from utils.gan.trainer import match_channels

        hr = (match_channels(batch["image"], channels).float() + 1) / 2
        target = usm_sharp(hr) if weights.usm_target else hr
        lr = degrade(target.cpu(), config.scale, gen, weights.degradation_order).to(device)
        return hr.to(device), target.to(device), lr

    def train_step(ctx: StepContext) -> dict[str, float]:
        from utils.gan import get_loss

        loss = get_loss(ctx.settings.loss)
        G, D, acc = ctx.G, ctx.D, ctx.accelerator
        hr, target, lr = pair(ctx.next_batch(), ctx.generator, ctx.device)
        if "lr" not in shown:
            shown["lr"], shown["hr"] = lr[:4].detach().cpu(), hr[:4].detach().cpu()
        if psnr_only:  # Real-ESRNet: the pixel loss alone, the discriminator untouched
            with acc.autocast():
                sr = to_01(G(to_net(lr)).float())
                pix = F.l1_loss(sr, target) if weights.pixel_criterion == "l1" else F.mse_loss(sr, target)
            ctx.opt_g.zero_grad(set_to_none=True)
            acc.backward(pix)
            ctx.opt_g.step()
            return {"loss_d": 0.0, "loss_g": pix.item(), "pixel": pix.item()}
        vgg.to(ctx.device)

        D.requires_grad_(False)
        with acc.autocast():
            sr = to_01(G(to_net(lr)).float())
            pix = F.l1_loss(sr, target) if weights.pixel_criterion == "l1" else F.mse_loss(sr, target)
            per = vgg(sr, target)
            d_fake = D(to_net(sr)).float()
            if loss.relativistic:  # ESRGAN: D's logits on the HR crops, as constants for G
                adv = loss.g_loss(d_fake, D(to_net(hr)).float().detach())
            else:
                adv = loss.g_loss(d_fake)
            loss_g = weights.pixel * pix + weights.perceptual * per + weights.adversarial * adv
        ctx.opt_g.zero_grad(set_to_none=True)
        acc.backward(loss_g)
        ctx.opt_g.step()
        D.requires_grad_(True)

        with acc.autocast():
            loss_d = loss.d_loss(D(to_net(hr)).float(), D(to_net(sr.detach())).float())
        ctx.opt_d.zero_grad(set_to_none=True)
        acc.backward(loss_d)
        ctx.opt_d.step()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "pixel": pix.item(), "perceptual": per.item(),
                "adversarial": adv.item()}

    def sampler(net: torch.nn.Module) -> torch.Tensor:
        """Rows: the LR input (bicubic up), the network's output, the HR crop; in [-1, 1]."""
        if "lr" not in shown:
            return torch.zeros(1, channels, config.image_size, config.image_size)
        device = next(net.parameters()).device
        lr, hr = shown["lr"].to(device), shown["hr"].to(device)
        up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        sr = to_01(net(to_net(lr)).float()).clamp(0, 1)
        return torch.cat([up, sr, hr]) * 2 - 1

    return GANRecipe(generator, build_discriminator(config), config, loss=weights.gan_loss, lr_g=lr_g, lr_d=1e-4,
                     betas=(0.9, 0.99), n_critic=1, ema_beta=0.999, batch_size=batch_size, steps=steps,
                     train_step=train_step, sampler=sampler)  # the data: train_gan's --dataset at the HR crop size


def esrgan_recipe(preset: str = "realesrgan-x4plus", psnr: bool = False) -> GANRecipe:
    """`psnr=True` (or the realesrnet-x4plus preset) is the Real-ESRNet stage: L1 only, Adam 2e-4, 1M steps."""
    tiny = preset == "tiny"
    psnr = psnr or preset == "realesrnet-x4plus"
    weights = REAL_ESRNET_WEIGHTS if psnr else ESRGAN_WEIGHTS if preset == "esrgan" else REAL_ESRGAN_WEIGHTS
    return sr_recipe(RRDB_PRESETS[preset], weights, tiny, batch_size=4 if tiny else 12,
                     steps=200 if tiny else 1_000_000 if psnr else 400_000, lr_g=2e-4 if psnr else 1e-4)


def srgan_recipe(preset: str = "srgan") -> GANRecipe:
    tiny = preset == "tiny"
    return sr_recipe(SRRESNET_PRESETS[preset], SRGAN_WEIGHTS, tiny, batch_size=4 if tiny else 16,
                     steps=200 if tiny else 100_000)
