"""The GAN training toolkit shared by every GAN: losses, penalties, augmentation, EMA."""
from train.gan.augment import AdaptiveAugment, diff_augment
from train.gan.ema import EMA
from train.gan.losses import LOSSES, GANLoss, get_loss
from train.gan.penalties import gradient_penalty, r1_penalty

__all__ = ["AdaptiveAugment", "diff_augment", "EMA", "LOSSES", "GANLoss", "get_loss", "gradient_penalty",
           "r1_penalty"]
