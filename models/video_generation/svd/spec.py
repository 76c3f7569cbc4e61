"""Stable Video Diffusion: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

_LICENCE = "Stability AI Community License (stable-video-diffusion-community)"
_LICENCE_11 = "Stable Video Diffusion 1.1 Non-Commercial Community License"

SPEC = ModelSpec(
    modality="video", name="svd", package=__package__,
    summary="Stable Video Diffusion (Blattmann et al. 2023): image-to-video latent diffusion, 14 (SVD) or 25 (XT) "
            "frames; text-to-video through an image model of the zoo.",
    pipeline="models.video_generation.svd.pipeline:SVDPipeline",
    presets=("svd", "svd-xt", "svd-xt-1.1", "tiny"), default_preset="svd-xt",
    weights=(WeightsSource("svd", "stabilityai/stable-video-diffusion-img2vid", _LICENCE, file="svd.safetensors"),
             WeightsSource("svd-xt", "stabilityai/stable-video-diffusion-img2vid-xt", _LICENCE,
                           file="svd_xt.safetensors"),
             WeightsSource("svd-xt-1.1", "stabilityai/stable-video-diffusion-img2vid-xt-1-1", _LICENCE_11,
                           file="svd_xt_1_1.safetensors", gated=True)),
    aliases=("stable-video-diffusion",),
    paper="https://arxiv.org/abs/2311.15127",
    trainer="models.video_generation.svd.training:recipe",
    # generative-models' scripts/sampling (simple_video_sample.py and the svd*.yaml guider configs):
    # frames, steps, the per-frame guidance ramp; 576x1024 frames; fps 7 is fps_id 6; decoding_t 14.
    # pixel_multiple: the VAE's 8 x the UNet's 8 (tiny: 2 x 2).
    defaults={
        "*": {"height": 576, "width": 1024, "fps": 7, "motion_bucket_id": 127, "noise_aug_strength": 0.02,
              "decode_chunk_size": 14, "pixel_multiple": 64},
        "svd": {"num_frames": 14, "steps": 25, "min_guidance": 1.0, "max_guidance": 2.5},
        "svd-xt": {"num_frames": 25, "steps": 30, "min_guidance": 1.5, "max_guidance": 3.0},
        "svd-xt-1.1": {"num_frames": 25, "steps": 30, "min_guidance": 1.5, "max_guidance": 3.0},
        "tiny": {"num_frames": 4, "steps": 3, "min_guidance": 1.0, "max_guidance": 2.5, "height": 32, "width": 32,
                 "decode_chunk_size": 4, "pixel_multiple": 4},
    },
)
