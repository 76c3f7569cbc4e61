"""FLUX.1: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

_DEV_LICENCE = "FLUX.1 [dev] Non-Commercial License"

SPEC = ModelSpec(
    modality="image", name="flux", package=__package__,
    summary="FLUX.1 (Black Forest Labs 2024): 12B rectified-flow transformer; schnell, dev, Fill inpainting, "
            "Canny and Depth control.",
    pipeline="models.image_generation.flux.pipeline:FluxPipeline",
    trainer="models.image_generation.flux.training:recipe",
    presets=("schnell", "dev", "fill", "canny", "depth", "tiny"), default_preset="schnell",
    weights=(WeightsSource("schnell", "black-forest-labs/FLUX.1-schnell", "Apache-2.0", file="flux1-schnell.safetensors"),
             WeightsSource("dev", "black-forest-labs/FLUX.1-dev", _DEV_LICENCE, file="flux1-dev.safetensors",
                           gated=True),
             WeightsSource("fill", "black-forest-labs/FLUX.1-Fill-dev", _DEV_LICENCE, file="flux1-fill-dev.safetensors",
                           gated=True),
             WeightsSource("canny", "black-forest-labs/FLUX.1-Canny-dev", _DEV_LICENCE,
                           file="flux1-canny-dev.safetensors", gated=True),
             WeightsSource("depth", "black-forest-labs/FLUX.1-Depth-dev", _DEV_LICENCE,
                           file="flux1-depth-dev.safetensors", gated=True)),
    aliases=("flux1", "flux.1", "flux-1"),
    paper="https://github.com/black-forest-labs/flux",
    # steps and guidance of the model cards; max_sequence_length is the T5 length each release was trained with
    defaults={
        "*": {"true_cfg": 4.0},
        "schnell": {"steps": 4, "max_sequence_length": 256},
        "dev": {"steps": 50, "guidance": 3.5, "max_sequence_length": 512},
        "fill": {"steps": 50, "guidance": 30.0, "max_sequence_length": 512},
        "canny": {"steps": 50, "guidance": 30.0, "max_sequence_length": 512},
        "depth": {"steps": 50, "guidance": 10.0, "max_sequence_length": 512},
        "tiny": {"steps": 4, "guidance": 3.5, "max_sequence_length": 32},
    },
)
