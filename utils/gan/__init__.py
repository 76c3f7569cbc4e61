"""The GAN training toolkit shared by every GAN: losses, penalties, augmentation, EMA."""
from utils.gan.augment import AdaptiveAugment, diff_augment
from utils.gan.ema import EMA
from utils.gan.losses import LOSSES, GANLoss, get_loss
from utils.gan.penalties import gradient_penalty, r1_penalty

__all__ = ["AdaptiveAugment", "diff_augment", "EMA", "LOSSES", "GANLoss", "get_loss", "gradient_penalty",
           "r1_penalty"]
