"""VQGAN (Esser, Rombach & Ommer 2021, taming-transformers): a vector-quantised autoencoder
trained with LPIPS and a PatchGAN; images <-> grids of codebook indices."""
from models.gan.vqgan import training
from models.gan.vqgan.config import PRESETS, VQGANConfig, VQGANLossConfig
from models.gan.vqgan.convert import config_from_diffusers, convert_diffusers, convert_state_dict, split_taming
from models.gan.vqgan.discriminator import PatchDiscriminator
from models.gan.vqgan.losses import adaptive_weight, adopt_weight, hinge_d_loss, vanilla_d_loss
from models.gan.vqgan.model import VQGAN, VQEncoding
from models.gan.vqgan.pipeline import VQGANPipeline
from models.gan.vqgan.quantizer import VectorQuantizer

__all__ = ["PRESETS", "PatchDiscriminator", "VQEncoding", "VQGAN", "VQGANConfig", "VQGANLossConfig", "VQGANPipeline",
           "VectorQuantizer", "adaptive_weight", "adopt_weight", "config_from_diffusers", "convert_diffusers",
           "convert_state_dict", "hinge_d_loss", "split_taming", "training", "vanilla_d_loss"]
