"""Super-resolution GANs: SRGAN (SRResNet) and ESRGAN / Real-ESRGAN (RRDBNet), x2 and x4."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "RRDB_PRESETS": "config:RRDB_PRESETS",
    "SRRESNET_PRESETS": "config:SRRESNET_PRESETS",
    "RRDBNetConfig": "config:RRDBNetConfig",
    "SRResNetConfig": "config:SRResNetConfig",
    "RRDBNet": "model:RRDBNet",
    "SRResNet": "model:SRResNet",
    "RRDB": "layers:RRDB",
    "ResidualDenseBlock": "layers:ResidualDenseBlock",
    "UNetDiscriminatorSN": "discriminator:UNetDiscriminatorSN",
    "VGGStyleDiscriminator": "discriminator:VGGStyleDiscriminator",
    "convert_rrdbnet": "convert:convert_rrdbnet",
    "infer_rrdbnet_config": "convert:infer_rrdbnet_config",
    "to_old_arch": "convert:to_old_arch",
    "ESRGANPipeline": "pipeline:ESRGANPipeline",
    "SRGANPipeline": "pipeline:SRGANPipeline",
    "ESRGAN": "pipeline:ESRGANPipeline",
    "SRGAN": "pipeline:SRGANPipeline",
})
