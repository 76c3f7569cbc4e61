"""DALL-E 3 stand-in: presets (which open base model), the weights each part loads, per-preset defaults (torch-free)."""
from models.spec import ModelSpec, WeightsSource

_SD3_LICENCE = "Stability AI Community License"
_FLUX_DEV_LICENCE = "FLUX.1 [dev] Non-Commercial License"

SPEC = ModelSpec(
    modality="image", name="dalle3", package=__package__,
    summary="DALL-E 3 stand-in (Betker et al. 2023; no weights exist): prompt rewriting, a T5-conditioned base "
            "(SD3.5 or FLUX), OpenAI's consistency decoder, LCM few-step mode, prompt and image safety filters.",
    pipeline="models.image_generation.dalle3.pipeline:DallE3Pipeline",
    presets=("sd3.5-large", "sd3.5-medium", "flux-dev", "flux-schnell", "tiny"), default_preset="sd3.5-large",
    weights=(WeightsSource("sd3.5-large", "stabilityai/stable-diffusion-3.5-large", _SD3_LICENCE,
                           file="sd3.5_large.safetensors", gated=True),
             WeightsSource("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium", _SD3_LICENCE,
                           file="sd3.5_medium.safetensors", gated=True),
             WeightsSource("flux-dev", "black-forest-labs/FLUX.1-dev", _FLUX_DEV_LICENCE, gated=True,
                           layout="diffusers"),
             WeightsSource("flux-schnell", "black-forest-labs/FLUX.1-schnell", "Apache-2.0", layout="diffusers")),
    aliases=("dall-e-3", "dalle-3", "dall_e_3"),
    paper="https://cdn.openai.com/papers/dall-e-3.pdf",
    # steps / guidance None: the base model's own defaults (its spec). fast_*: the LCM-LoRA model card's
    # 4 steps at guidance 1 (LCM needs no classifier-free guidance). decoder "auto": the consistency decoder
    # for 4-channel latents (the SDXL fast mode), the base's VAE otherwise; 2 consistency steps.
    defaults={"*": {"decoder": "auto", "decoder_steps": 2, "fast_steps": 4, "fast_guidance": 1.0,
                    "rewrite": True}},
)

# The other parts a real preset loads (hub repos; each loads offline from the cache like every weight).
BASES = {"sd3.5-large": ("sd3", "sd3.5-large"), "sd3.5-medium": ("sd3", "sd3.5-medium"),
         "flux-dev": ("flux", "dev"), "flux-schnell": ("flux", "schnell"), "tiny": ("sd3", "tiny")}
"""DALL-E 3 preset -> (base model of the zoo, its preset)."""
FAST_BASE = "stabilityai/stable-diffusion-xl-base-1.0"
LCM_LORA = "latent-consistency/lcm-lora-sdxl"
CONSISTENCY_DECODER = "openai/consistency-decoder"
SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"
