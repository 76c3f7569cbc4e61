"""`TrainConfig`: every number of a diffusion training run (a model's recipe gives the defaults per preset,
the command line overrides them), and `ModelTraining`: what a model package registers as its recipe."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from utils.errors import UserError

MODES = ("full", "lora", "dreambooth")
OPTIMIZERS = ("adamw", "adamw8bit")


@dataclass(frozen=True)
class TrainConfig:
    """One run: the recipe's numbers with the command line's overrides."""

    model: str = ""
    """Registry name (sdxl, sd3, flux, sd15...)."""
    preset: str = "tiny"
    """The model preset trained; its weights are the starting point ('tiny': random tiny weights)."""
    mode: str = "lora"
    """'full' (every denoiser weight), 'lora' (peft adapters, base frozen), 'dreambooth' (LoRA on instance
    images with an identifier prompt, plus the prior-preservation loss on class images)."""
    steps: int = 40
    """Optimisation steps."""
    batch_size: int = 2
    """Images per micro-step and process."""
    grad_accum: int = 1
    """Micro-steps (batches) whose gradients add up to one optimisation step."""
    lr: float = 1e-4
    """AdamW learning rate (constant after `lr_warmup` linear warm-up steps)."""
    lr_warmup: int = 0
    """Steps of linear learning-rate warm-up."""
    text_encoder_lr: float | None = None
    """Learning rate of text-encoder LoRA (None: `lr`)."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping (0: off)."""
    optimizer: str = "adamw"
    """'adamw', or 'adamw8bit' (bitsandbytes' 8-bit AdamW; CUDA only)."""
    mixed_precision: str = "no"
    """accelerate mixed precision: no, fp16 or bf16 (frozen weights are stored in it, trained ones in fp32)."""
    gradient_checkpointing: bool = False
    """Recompute block activations in the backward pass (less memory, slower)."""
    ema: float = 0.0
    """EMA decay of the denoiser weights in full mode (0: none)."""
    rank: int = 4
    """LoRA rank."""
    alpha: float | None = None
    """LoRA alpha (the update is scaled by alpha / rank); None: equal to the rank."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    lora_targets: tuple[str, ...] = ("attention", "mlp")
    """Groups of layers LoRA adapts (the model's TARGET_GROUPS), or layer-name endings."""
    train_text_encoder: bool = False
    """Also train a LoRA on the CLIP text encoder(s) (SD 1.5 / SDXL)."""
    resolution: int = 32
    """Training resolution: the side of the square bucket; other buckets keep its area."""
    buckets: bool = True
    """Aspect-ratio bucketing (False: every image is resized and cropped to resolution^2)."""
    max_ratio: float = 2.0
    """The widest aspect ratio a bucket may have."""
    center_crop: bool = True
    """Centre crops (False: random crops, drawn per step from the run's seed)."""
    random_flip: bool = False
    """Mirror images left-right with probability 1/2."""
    caption_dropout: float = 0.0
    """Probability of training an image with the empty caption (keeps classifier-free guidance working)."""
    cache_latents: bool = False
    """Encode every image with the VAE once and keep the posteriors on disk."""
    cache_text: bool = False
    """Encode every caption once and keep the text features on disk."""
    prediction_type: str = "epsilon"
    """UNets: what the model predicts, 'epsilon' or 'v_prediction'."""
    snr_gamma: float | None = None
    """UNets: min-SNR weighting gamma (5 is the paper's; None: off)."""
    density: str = "logit_normal"
    """Flow models: timestep density, logit_normal, mode or uniform."""
    logit_mean: float = 0.0
    """Flow models: mean of the logit-normal density."""
    logit_std: float = 1.0
    """Flow models: standard deviation of the logit-normal density."""
    mode_scale: float = 1.29
    """Flow models: scale of the mode density."""
    weighting: str = "none"
    """Flow models: loss weighting, none, sigma_sqrt or cosmap."""
    shift: float = 1.0
    """Flow models: static shift of the sampled sigmas (SD3: 3.0, FLUX: 1.0)."""
    guidance: float = 3.5
    """FLUX dev: the fixed value fed to the guidance embedding while training."""
    instance_prompt: str = ""
    """DreamBooth: the prompt of the instance images, with its identifier ('a photo of sks dog')."""
    class_prompt: str = ""
    """DreamBooth: the prompt of the class ('a photo of a dog'); the model makes the class images with it."""
    class_data: str = ""
    """DreamBooth: folder of class images (made there by the model when it holds fewer than num_class_images)."""
    num_class_images: int = 8
    """DreamBooth: class images for prior preservation."""
    prior_loss_weight: float = 1.0
    """DreamBooth: weight of the prior-preservation loss (0: no class images)."""
    sample_steps: int = 4
    """Sampling steps of the class images and the validation grids."""
    validation_prompts: tuple[str, ...] = ()
    """Prompts rendered to a sample grid every `sample_every` steps (empty: the data's first captions)."""
    seed: int = 0
    """Seed of the initial adapter weights, the data order and every step's noise."""

    def check(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"--mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        for name in ("steps", "batch_size", "grad_accum", "resolution", "sample_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.mode != "full" and self.rank < 1:
            raise UserError(f"--rank must be at least 1, got {self.rank}: a LoRA of rank 0 has no parameters to train")
        if not self.lr > 0 or (self.text_encoder_lr is not None and not self.text_encoder_lr > 0):
            raise UserError(f"learning rates must be positive, got --lr {self.lr}")
        for name in ("caption_dropout", "lora_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise UserError(f"--ema must be in [0, 1), got {self.ema}")
        if self.ema > 0 and self.mode != "full":
            raise UserError("--ema is for --mode full (a LoRA is small and trained briefly): leave it out")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got '{self.mixed_precision}'")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'")
        if self.train_text_encoder and self.mode == "full":
            raise UserError("--train-text-encoder trains a text-encoder LoRA: use it with --mode lora or dreambooth")
        if self.train_text_encoder and self.cache_text:
            raise UserError("--cache-text stores fixed text features, but --train-text-encoder changes them: drop one")
        if self.mode == "dreambooth":
            if not self.instance_prompt:
                raise UserError("--mode dreambooth needs --instance-prompt (e.g. 'a photo of sks dog')")
            if self.prior_loss_weight > 0 and not self.class_prompt:
                raise UserError("DreamBooth's prior preservation needs --class-prompt (e.g. 'a photo of a dog'), or "
                                "--prior-loss-weight 0 to train without it")
            if self.prior_loss_weight < 0 or self.num_class_images < 1:
                raise UserError("--prior-loss-weight must be >= 0 and --num-class-images >= 1")

    def with_(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


RESUME_FIXED = ("model", "preset", "mode", "seed", "batch_size", "grad_accum", "resolution", "buckets", "rank",
                "alpha", "lora_targets", "train_text_encoder", "center_crop", "random_flip", "max_ratio")
"""Settings a resumed run must share with its checkpoint: they fix the trained parameters, the data and the noise."""


@dataclass(frozen=True)
class ModelTraining:
    """A model package's training recipe (its spec's `trainer` returns one per preset)."""

    defaults: TrainConfig
    """The preset's numbers (resolution, learning rates, objective)."""
    load_pipeline: Callable[[str, str | None], Any]
    """(preset, weights or None) -> the model's pipeline on the CPU in float32."""
    make: Callable[[Any, TrainConfig], Any]
    """(pipeline, config) -> the model's `DiffusionRecipe` (utils.diffusion.training.recipe)."""
    full_lr: float | None = None
    """The learning rate of --mode full when --lr is not given (None: defaults.lr)."""
    notes: dict = field(default_factory=dict)
    """Free-form facts about the recipe: where its defaults come from."""


__all__ = ["MODES", "ModelTraining", "OPTIMIZERS", "RESUME_FIXED", "TrainConfig"]
