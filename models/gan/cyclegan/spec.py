"""CycleGAN: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

RELEASE_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
"""Where junyanz/pytorch-CycleGAN-and-pix2pix's download_cyclegan_model.sh fetches the pretrained generators."""
RELEASED = ("horse2zebra", "zebra2horse", "monet2photo", "style_monet", "style_cezanne", "style_ukiyoe",
            "style_vangogh", "summer2winter_yosemite", "winter2summer_yosemite", "apple2orange", "orange2apple",
            "sat2map", "map2sat", "cityscapes_photo2label", "cityscapes_label2photo", "facades_photo2label",
            "facades_label2photo", "iphone2dslr_flower")

SPEC = ModelSpec(
    modality="gan", name="cyclegan", package=__package__,
    summary="CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with cycle consistency.",
    pipeline="models.gan.cyclegan.pipeline:CycleGANPipeline",
    presets=("resnet-9blocks", "resnet-6blocks", "digits", "tiny", *RELEASED), default_preset="resnet-9blocks",
    weights=tuple(WeightsSource(name, f"{RELEASE_URL}/{name}.pth", "BSD (junyanz/pytorch-CycleGAN-and-pix2pix)",
                                file=f"{name}.pth") for name in RELEASED),
    aliases=("cycle_gan", "cycle-gan"),
    paper="https://arxiv.org/abs/1703.10593", trainer="models.gan.cyclegan.training:recipe",
)
