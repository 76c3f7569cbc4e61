"""BigGAN-deep (Brock, Donahue & Simonyan 2018): class-conditional ImageNet GAN at 128, 256 and 512 px."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "PRESETS": "config:PRESETS",
    "BigGANConfig": "config:BigGANConfig",
    "BigGANDiscriminatorConfig": "config:BigGANDiscriminatorConfig",
    "convert_pretrained_biggan": "convert:convert_pretrained_biggan",
    "convert_state_dict": "convert:convert_state_dict",
    "reference_key_map": "convert:reference_key_map",
    "BigGANDiscriminator": "discriminator:BigGANDiscriminator",
    "hinge_d_loss": "discriminator:hinge_d_loss",
    "hinge_g_loss": "discriminator:hinge_g_loss",
    "orthogonal_regularization": "discriminator:orthogonal_regularization",
    "ortho_params": "discriminator:ortho_params",
    "BigGANGenerator": "generator:BigGANGenerator",
    "BigGANPipeline": "pipeline:BigGANPipeline",
    "truncated_noise": "pipeline:truncated_noise",
})
