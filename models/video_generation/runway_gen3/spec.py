"""Runway Gen-3 stand-in (AnimateDiff motion modules on SD 1.5): presets, weights, per-preset defaults
(torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

# guoyww/AnimateDiff is Apache-2.0 (code and released motion modules); the SD 1.5 base is the
# stable_diffusion package's sd15 weights (CreativeML Open RAIL-M).
_LICENCE = "Apache-2.0 (AnimateDiff motion modules); the SD 1.5 base: CreativeML Open RAIL-M"
_SDXL_LICENCE = "Apache-2.0 (AnimateDiff motion modules); the SDXL base: CreativeML Open RAIL++-M"

BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""The image model the motion modules were trained on (a hub id, folder or single file replaces it: `base=`)."""
SDXL_BASE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
"""The image model of the SDXL beta adapter (CreativeML Open RAIL++-M)."""

SPEC = ModelSpec(
    modality="video", name="runway_gen3", package=__package__,
    summary="Runway Gen-3 stand-in (no public weights): AnimateDiff motion modules (Guo et al. 2023) on SD 1.5 "
            "(or SDXL, beta); "
            "text-, image- and video-to-video, motion brush, ControlNet per frame.",
    pipeline="models.video_generation.runway_gen3.pipeline:RunwayGen3Pipeline",
    presets=("v15-v2", "v15-v3", "sdxl-beta", "tiny", "tiny-sdxl"), default_preset="v15-v2",
    weights=(WeightsSource("v15-v2", "guoyww/animatediff", _LICENCE, file="mm_sd_v15_v2.ckpt"),
             WeightsSource("v15-v3", "guoyww/animatediff", _LICENCE, file="v3_sd15_mm.ckpt"),
             WeightsSource("sdxl-beta", "guoyww/animatediff", _SDXL_LICENCE, file="mm_sdxl_v10_beta.ckpt")),
    aliases=("gen3", "runway", "animatediff"),
    paper="https://arxiv.org/abs/2307.04725",
    trainer="models.video_generation.runway_gen3.training:recipe",
    # AnimateDiff's configs/inference (16 frames at 512 px, 25 DDIM steps, guidance 7.5, 8 fps GIFs).
    # pixel_multiple: the VAE's 8 x the UNet's 8 (tiny: 2 x 4).
    defaults={
        "*": {"num_frames": 16, "height": 512, "width": 512, "steps": 25, "guidance": 7.5, "fps": 8,
              "decode_chunk_size": 16, "pixel_multiple": 64},
        # the SDXL beta at SDXL's 1024 px; the SDXL UNet downscales 4x (3 levels): multiples of 32 pixels
        "sdxl-beta": {"height": 1024, "width": 1024, "pixel_multiple": 32},
        "tiny": {"num_frames": 4, "height": 32, "width": 32, "steps": 3, "pixel_multiple": 8},
        "tiny-sdxl": {"num_frames": 4, "height": 32, "width": 32, "steps": 3, "pixel_multiple": 4},
    },
)
