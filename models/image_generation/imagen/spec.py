"""Imagen stand-in: the DeepFloyd IF cascade presets, weights and licences, per-preset call defaults (torch-free)."""
from models.spec import ModelSpec, WeightsSource

_IF_LICENCE = "DeepFloyd IF License Agreement (non-commercial research)"
_X4_LICENCE = "CreativeML Open RAIL++-M"

SPEC = ModelSpec(
    modality="image", name="imagen", package=__package__,
    summary="Imagen stand-in (Saharia et al. 2022; Imagen 3 has no weights): cascaded pixel diffusion on DeepFloyd IF "
            "(T5-XXL, 64 -> 256 px, dynamic thresholding) and the SD x4 upscaler (-> 1024 px).",
    pipeline="models.image_generation.imagen.pipeline:ImagenPipeline",
    presets=("if-i-xl", "if-i-l", "if-i-m", "if-ii-l", "if-ii-m", "sd-x4-upscaler", "tiny"), default_preset="if-i-xl",
    weights=(WeightsSource("if-i-xl", "DeepFloyd/IF-I-XL-v1.0", _IF_LICENCE, gated=True, layout="diffusers"),
             WeightsSource("if-i-l", "DeepFloyd/IF-I-L-v1.0", _IF_LICENCE, gated=True, layout="diffusers"),
             WeightsSource("if-i-m", "DeepFloyd/IF-I-M-v1.0", _IF_LICENCE, gated=True, layout="diffusers"),
             WeightsSource("if-ii-l", "DeepFloyd/IF-II-L-v1.0", _IF_LICENCE, gated=True, layout="diffusers"),
             WeightsSource("if-ii-m", "DeepFloyd/IF-II-M-v1.0", _IF_LICENCE, gated=True, layout="diffusers"),
             WeightsSource("sd-x4-upscaler", "stabilityai/stable-diffusion-x4-upscaler", _X4_LICENCE,
                           layout="diffusers")),
    aliases=("imagen3", "imagen-3", "deepfloyd-if", "deepfloyd_if"),
    paper="https://arxiv.org/abs/2205.11487",
    # The release pipelines' values: IFPipeline 100 steps at guidance 7; IFSuperResolutionPipeline 50 steps,
    # guidance 4, augmentation level 250; the x4 upscaler 75 steps, guidance 9 and level 100 as DeepFloyd's
    # cascade example calls it. `stages`: the last stage a call runs (2 = 256 px; 3 adds the x4 upscaler).
    defaults={"*": {"steps": 100, "guidance": 7.0, "sr_steps": 50, "sr_guidance": 4.0, "noise_level": 250,
                    "upscale_steps": 75, "upscale_guidance": 9.0, "upscale_noise_level": 100, "stages": 2},
              "if-ii-l": {"steps": 50, "guidance": 4.0}, "if-ii-m": {"steps": 50, "guidance": 4.0},
              "sd-x4-upscaler": {"steps": 75, "guidance": 9.0},
              "tiny": {"steps": 3, "sr_steps": 2, "upscale_steps": 2, "stages": 3}},
)

# Which stage II / III each stage I preset hands over to when a call runs more stages.
NEXT_STAGES = {"if-i-xl": "if-ii-l", "if-i-l": "if-ii-l", "if-i-m": "if-ii-m"}
FIRST_STAGE = {"if-i-xl": 1, "if-i-l": 1, "if-i-m": 1, "if-ii-l": 2, "if-ii-m": 2, "sd-x4-upscaler": 3, "tiny": 1}
