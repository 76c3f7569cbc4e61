"""Training diffusion models: objectives (epsilon / v with min-SNR, flow matching), the trainer (full,
LoRA, DreamBooth), caches, and the recipe contract each model package implements; see docs/training.md."""
from utils.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "NoisePrediction": "objectives:NoisePrediction",
    "FlowMatching": "objectives:FlowMatching",
    "TrainConfig": "config:TrainConfig",
    "ModelTraining": "config:ModelTraining",
    "DiffusionRecipe": "recipe:DiffusionRecipe",
    "DiffusionTrainer": "trainer:DiffusionTrainer",
    "RunOptions": "trainer:RunOptions",
})
