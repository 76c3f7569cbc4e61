"""BigGAN-deep (Brock, Donahue & Simonyan 2018): class-conditional ImageNet GAN at 128, 256 and 512 px."""
from models.gan.biggan.config import PRESETS, BigGANConfig, BigGANDiscriminatorConfig
from models.gan.biggan.convert import convert_pretrained_biggan, convert_state_dict, reference_key_map
from models.gan.biggan.discriminator import (BigGANDiscriminator, hinge_d_loss, hinge_g_loss, orthogonal_regularization,
                                             ortho_params)
from models.gan.biggan.generator import BigGANGenerator
from models.gan.biggan.pipeline import BigGANPipeline, truncated_noise

__all__ = ["PRESETS", "BigGANConfig", "BigGANDiscriminator", "BigGANDiscriminatorConfig", "BigGANGenerator",
           "BigGANPipeline", "convert_pretrained_biggan", "convert_state_dict", "hinge_d_loss", "hinge_g_loss",
           "ortho_params", "orthogonal_regularization", "reference_key_map", "truncated_noise"]
