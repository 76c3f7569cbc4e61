"""Stable Diffusion XL and 3 / 3.5: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

_SD3_LICENCE = "Stability AI Community License"
_SDXL_LICENCE = "CreativeML Open RAIL++-M"

SDXL = ModelSpec(
    modality="image", name="sdxl", package=__package__,
    summary="Stable Diffusion XL (Podell et al. 2023): base + refiner UNets, text-to-image, img2img, inpainting.",
    pipeline="models.image_generation.stable_diffusion.pipeline:SDXLPipeline",
    trainer="models.image_generation.stable_diffusion.training:sdxl_recipe",
    presets=("sdxl-base", "sdxl-refiner", "tiny"), default_preset="sdxl-base",
    weights=(WeightsSource("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", _SDXL_LICENCE,
                           file="sd_xl_base_1.0.safetensors"),
             WeightsSource("sdxl-refiner", "stabilityai/stable-diffusion-xl-refiner-1.0", _SDXL_LICENCE,
                           file="sd_xl_refiner_1.0.safetensors")),
    aliases=("stable-diffusion-xl", "sd-xl"),
    paper="https://arxiv.org/abs/2307.01952",
    defaults={"*": {"steps": 30, "guidance": 5.0}, "tiny": {"steps": 3}},
)

SD3 = ModelSpec(
    modality="image", name="sd3", package=__package__,
    summary="Stable Diffusion 3 / 3.5 (Esser et al. 2024): MMDiT rectified-flow transformer, CLIP-L + CLIP-G + T5.",
    pipeline="models.image_generation.stable_diffusion.pipeline:SD3Pipeline",
    trainer="models.image_generation.stable_diffusion.training:sd3_recipe",
    presets=("sd3-medium", "sd3.5-medium", "sd3.5-large", "tiny"), default_preset="sd3.5-medium",
    weights=(WeightsSource("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers", _SD3_LICENCE, gated=True,
                           layout="diffusers"),
             WeightsSource("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium", _SD3_LICENCE,
                           file="sd3.5_medium.safetensors", gated=True),
             WeightsSource("sd3.5-large", "stabilityai/stable-diffusion-3.5-large", _SD3_LICENCE,
                           file="sd3.5_large.safetensors", gated=True)),
    aliases=("stable-diffusion-3", "sd3.5", "sd35"),
    paper="https://arxiv.org/abs/2403.03206",
    # the model cards' steps and guidance; max_sequence_length: the T5 tokens of the context (diffusers' 256)
    defaults={"*": {"steps": 28, "guidance": 7.0, "max_sequence_length": 256},
              "sd3.5-medium": {"steps": 40, "guidance": 4.5}, "sd3.5-large": {"steps": 28, "guidance": 4.5},
              "tiny": {"steps": 3, "guidance": 5.0, "max_sequence_length": 16}},
)

SD15 = ModelSpec(
    modality="image", name="sd15", package=__package__,
    summary="Stable Diffusion 1.5 / 2.1 (Rombach et al. 2022): latent diffusion UNet, CLIP-L / OpenCLIP-H text.",
    pipeline="models.image_generation.stable_diffusion.pipeline:SD15Pipeline",
    trainer="models.image_generation.stable_diffusion.training:sd15_recipe",
    presets=("sd15", "sd21", "tiny"), default_preset="sd15",
    weights=(WeightsSource("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "CreativeML Open RAIL-M",
                           file="v1-5-pruned-emaonly.safetensors"),
             WeightsSource("sd21", "stabilityai/stable-diffusion-2-1", _SDXL_LICENCE,
                           file="v2-1_768-ema-pruned.safetensors")),
    aliases=("stable-diffusion-1.5", "sd1.5", "sd21", "sd2.1", "stable-diffusion-2.1"),
    paper="https://arxiv.org/abs/2112.10752",
    # the model cards' steps and guidance (diffusers' StableDiffusionPipeline defaults)
    defaults={"*": {"steps": 50, "guidance": 7.5}, "tiny": {"steps": 3}},
)

# Default ControlNet per (family, control kind): hub repos in the diffusers layout, with their licences.
# lllyasviel's ControlNet 1.1 (SD 1.5) and the diffusers team's SDXL releases; others load by path or repo id.
CONTROLNETS: dict[tuple[str, str], tuple[str, str]] = {
    ("sd15", "canny"): ("lllyasviel/control_v11p_sd15_canny", "OpenRAIL"),
    ("sd15", "depth"): ("lllyasviel/control_v11f1p_sd15_depth", "OpenRAIL"),
    ("sd15", "pose"): ("lllyasviel/control_v11p_sd15_openpose", "OpenRAIL"),
    ("sdxl", "canny"): ("diffusers/controlnet-canny-sdxl-1.0", "CreativeML Open RAIL++-M"),
    ("sdxl", "depth"): ("diffusers/controlnet-depth-sdxl-1.0", "CreativeML Open RAIL++-M"),
}

SPECS = (SDXL, SD3, SD15)
