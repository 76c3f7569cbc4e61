"""The Sora stand-in (Wan 2.1 / 2.2 open weights): presets, weights and licences, per-preset defaults (torch-free)."""
from models.spec import ModelSpec, WeightsSource

_LICENCE = "Apache-2.0 (Wan-AI)"

# The release's default negative prompt (wan/configs/shared_config.py: sample_neg_prompt), in Chinese as
# published: garish colours, overexposure, static, blurry detail, subtitles, ..., extra fingers, deformed
# limbs, cluttered background, three legs, walking backwards.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
    "杂乱的背景，三条腿，背景人很多，倒着走")

SPEC = ModelSpec(
    modality="video", name="sora", package=__package__,
    summary="Sora stand-in: Wan 2.1/2.2 (Wan team 2025), a spacetime-patch video diffusion transformer over a causal "
            "video VAE, UMT5 text; text-to-video and image-to-video. Sora itself has no public weights.",
    pipeline="models.video_generation.sora.pipeline:WanPipeline",
    presets=("wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.1-i2v-14b-480p", "wan2.2-ti2v-5b", "tiny"),
    default_preset="wan2.1-t2v-1.3b",
    weights=(WeightsSource("wan2.1-t2v-1.3b", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", _LICENCE, layout="diffusers"),
             WeightsSource("wan2.1-t2v-14b", "Wan-AI/Wan2.1-T2V-14B-Diffusers", _LICENCE, layout="diffusers"),
             WeightsSource("wan2.1-i2v-14b-480p", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", _LICENCE,
                           layout="diffusers"),
             WeightsSource("wan2.2-ti2v-5b", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", _LICENCE, layout="diffusers")),
    aliases=("wan", "wan2.1"),
    paper="https://arxiv.org/abs/2503.20314",
    # generate.py / wan/configs of the Wan 2.1 release: 81 frames at 16 fps, 5.0 guidance, 50 steps (40 for
    # i2v), shift 5.0 (3.0 for 480p i2v), 512 text tokens; 480x832 for 1.3B and 480p i2v, 720x1280 for 14B
    # t2v. Wan 2.2 TI2V-5B (wan/configs/wan_ti2v_5B.py of the Wan 2.2 release): 704x1280, 121 frames at 24 fps,
    # 50 steps, guidance 5.0, shift 5.0; sides multiples of 32 (VAE 16 x patch 2). tiny: for tests.
    defaults={
        "*": {"num_frames": 81, "fps": 16, "guidance_scale": 5.0, "steps": 50, "shift": 5.0, "height": 480,
              "width": 832, "max_sequence_length": 512, "negative_prompt": WAN_NEGATIVE_PROMPT, "pixel_multiple": 16},
        "wan2.1-t2v-14b": {"height": 720, "width": 1280},
        "wan2.1-i2v-14b-480p": {"steps": 40, "shift": 3.0},
        "wan2.2-ti2v-5b": {"height": 704, "width": 1280, "num_frames": 121, "fps": 24, "pixel_multiple": 32},
        "tiny": {"num_frames": 5, "steps": 3, "height": 32, "width": 32, "max_sequence_length": 16, "fps": 8,
                 "negative_prompt": "", "pixel_multiple": 8},
    },
)
