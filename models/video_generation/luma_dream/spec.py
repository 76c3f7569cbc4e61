"""The Luma Dream Machine stand-in (LTX-Video open weights): presets, weights and licences, per-preset
defaults (torch-free).

Dream Machine has no public weights; every preset here is one of Lightricks' LTX-Video 2B releases
(or `tiny`, random weights for tests).
"""
from models.spec import ModelSpec, WeightsSource

_RAIL = "OpenRAIL-M (LTX-Video 0.9 / 0.9.1 licence, Lightricks)"
_OPEN_WEIGHTS = "LTX-Video Open Weights License (0.9.5 and later, Lightricks)"
_REPO = "Lightricks/LTX-Video"

# The release's default negative prompt (LTX-Video inference.py, --negative_prompt).
LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"

# The timesteps (= sigmas: no shift) of the timestep-distilled releases, one pass of 8 steps. Sources: the
# Lightricks/LTX-Video repo's configs/ltxv-13b-0.9.7-distilled.yaml (first_pass.timesteps [1.0000, 0.9937,
# 0.9875, 0.9812, 0.9750, 0.9094, 0.7250], second_pass [0.9094, 0.7250, 0.4219]: the same levels, split over
# two resolutions), and the 8-level list the distilled checkpoints allow ("allowed inference steps" in their
# metadata), which Lightricks' ComfyUI-LTXVideo example workflow ltxvideo-i2v-distilled.json samples the
# 2B 0.9.6 distilled model with: 1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725, 0.4219, then 0.
DISTILLED_TIMESTEPS = (1.0, 0.9937, 0.9875, 0.9812, 0.975, 0.9094, 0.725, 0.4219)

SPEC = ModelSpec(
    modality="video", name="luma_dream", package=__package__,
    summary="Luma Dream Machine stand-in: LTX-Video (Lightricks 2024), a 2B latent video diffusion transformer over "
            "a 1:192 video VAE, T5-XXL text; text-to-video, image-to-video, keyframe and video conditioning, "
            "distilled 8-step sampling, a camera adapter to train (no released weights), "
            "live previews. Dream Machine itself has no public weights.",
    pipeline="models.video_generation.luma_dream.pipeline:LTXVideoPipeline",
    presets=("ltxv-2b-0.9", "ltxv-2b-0.9.1", "ltxv-2b-0.9.5", "ltxv-2b-0.9.6-distilled", "tiny"),
    default_preset="ltxv-2b-0.9.5",
    weights=(WeightsSource("ltxv-2b-0.9", _REPO, _RAIL, file="ltx-video-2b-v0.9.safetensors"),
             WeightsSource("ltxv-2b-0.9.1", _REPO, _RAIL, file="ltx-video-2b-v0.9.1.safetensors"),
             WeightsSource("ltxv-2b-0.9.5", _REPO, _OPEN_WEIGHTS, file="ltx-video-2b-v0.9.5.safetensors"),
             WeightsSource("ltxv-2b-0.9.6-distilled", _REPO, _OPEN_WEIGHTS,
                           file="ltxv-2b-0.9.6-distilled-04-25.safetensors")),
    aliases=("luma", "ltx", "ltx_video", "ltxv", "dream_machine"),
    paper="https://arxiv.org/abs/2501.00103",
    # diffusers' LTXPipeline / the release's inference.py: 25 fps, guidance 3.0, 128 text tokens, 1 + 8k frames,
    # sides multiples of 32; 0.9.1+ VAEs decode at timestep 0.05 with 0.025 of fresh noise (the release's
    # configs). Distilled: 8 fixed timesteps without guidance. tiny: for tests.
    defaults={
        "*": {"num_frames": 121, "fps": 25, "guidance_scale": 3.0, "steps": 40, "height": 512, "width": 704,
              "max_sequence_length": 128, "negative_prompt": LTX_NEGATIVE_PROMPT, "decode_timestep": 0.05,
              "decode_noise_scale": 0.025, "timesteps": None, "vae_preset": "ltxv-0.9.5", "pixel_multiple": 32, "frame_multiple": 8,
              "text_encoder_source": _REPO},
        "ltxv-2b-0.9": {"vae_preset": "ltxv-0.9", "decode_timestep": 0.0, "decode_noise_scale": 0.0},
        "ltxv-2b-0.9.1": {"vae_preset": "ltxv-0.9.1"},
        "ltxv-2b-0.9.6-distilled": {"steps": 8, "guidance_scale": 1.0, "timesteps": DISTILLED_TIMESTEPS},
        # The tiny VAE compresses 2x in time and 4x in space: its clips have 1 + 2k frames.
        "tiny": {"num_frames": 5, "steps": 3, "height": 32, "width": 32, "max_sequence_length": 16,
                 "negative_prompt": "", "vae_preset": "tiny", "pixel_multiple": 4, "frame_multiple": 2},
    },
)
