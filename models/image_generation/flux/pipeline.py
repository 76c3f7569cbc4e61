"""FLUX.1 pipeline: text-to-image (dev, schnell), img2img, inpainting (Fill, or latent blending with
dev/schnell), Canny and Depth control.

    prompt ─ CLIP-L ─ pooled (768) ─────────────────┐
           └ T5-XXL ─ tokens (512 dev / 256 schnell, 4096) ┤
    noise (B, 16, H/8, W/8) ─ pack 2x2 ─ (B, HW/256, 64) ─ FluxTransformer (x steps, Euler on the flow)
           [+ Fill: masked-image latents and the 8x8 mask, 320 channels; + Control: control latents, 64]
    ─ unpack ─ AutoencoderKL (16 channels) ─ image

Sampling: rectified-flow Euler from sigma 1 to 0 over `linspace(1, 1/n, n)`, shifted with the image
token count for dev/Fill/Canny/Depth (mu 0.5 at 256 tokens to 1.15 at 4096) and unshifted for schnell
(4 steps). dev is guidance-distilled: the guidance scale is an input of the transformer (3.5 by default;
Fill and Canny 30, Depth 10 as in the official release), one model call per step. A negative prompt
switches on true classifier-free guidance (`true_cfg`, two calls per step) as diffusers does.
Packing, position ids and the schedule are in `sampling.py`; devices, offload, tiling, compilation and
seeding (image i uses seed + i) come from `utils.diffusion.DiffusionPipeline`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from models.image_generation.flux import convert as C
from models.image_generation.flux.model import PRESETS, FluxParams, FluxTransformer
from models.image_generation.flux.sampling import (LATENT_CHANNELS, image_ids, img2img_start, pack_latents,
                                                   pack_mask_fill, sigmas, text_ids, unpack_latents)
from models.image_generation.flux.spec import SPEC
from utils.data.image_inputs import ImageInput, load_image, load_mask
from utils.diffusion import DiffusionPipeline, FlowMatchEuler, InpaintBlend, cfg_combine, get_scheduler, sample
from utils.diffusion.inputs import as_prompts, batch_inputs, output_size
from utils.diffusion.noise import initial_noise
from utils.errors import UserError, WeightsError
from utils.outputs import ImageOutput

VARIANTS = tuple(p for p in SPEC.presets if p != "tiny")

# Scheduler configs of the hub repos (scheduler/scheduler_config.json).
SCHEDULER_DEV = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                 "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}
SCHEDULER_SCHNELL = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}


class FluxPipeline(DiffusionPipeline):
    """A FLUX.1 transformer, the 16-channel VAE, CLIP-L and T5-XXL, and the flow-matching sampler."""

    spec = SPEC
    components = ("clip", "t5", "transformer", "vae")
    denoiser_name = "transformer"
    cuda_dtype = torch.bfloat16

    def __init__(self, transformer: FluxTransformer, vae: nn.Module, clip: nn.Module, t5: nn.Module,
                 preset: str = "dev", scheduler_config: dict | None = None, max_sequence_length: int | None = None):
        self.transformer, self.vae, self.clip, self.t5 = transformer, vae, clip, t5
        self.preset = preset
        default_sched = SCHEDULER_DEV if transformer.params.guidance_embed else SCHEDULER_SCHNELL
        self.scheduler_config = dict(scheduler_config or default_sched)
        self.max_sequence_length = int(self.default("max_sequence_length", max_sequence_length))

    # -- what this pipeline is -------------------------------------------------------------------

    @property
    def params(self) -> FluxParams:
        return self.transformer.params

    @property
    def variant(self) -> str:
        """'fill', 'canny', 'depth', 'dev' or 'schnell' (from the transformer, and the preset for control)."""
        p = self.params
        if p.in_channels == 384:  # noise 64 + masked-image latents 64 + 8x8 mask 256
            return "fill"
        if p.in_channels == 2 * p.out_channels:
            return "depth" if self.preset == "depth" else "canny"
        return "dev" if p.guidance_embed else "schnell"

    @property
    def pixel_multiple(self) -> int:
        """Image sides must be multiples of this: VAE downscale (8) times the 2x2 packing = 16."""
        return self.vae.config.downscale * 2

    @property
    def default_size(self) -> int:
        return 1024 if self.preset != "tiny" else 4 * self.pixel_multiple

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        text_encoders: str | os.PathLike | None = None, offload: str | None = None,
                        vae_tiling: bool = False, compile: bool = False, attention: str | None = None,
                        max_sequence_length: int | None = None) -> "FluxPipeline":
        """Load FLUX.1 from a diffusers folder, the official single file (flux1-dev.safetensors...,
        also prefixed community files in bf16/fp8) or a hub id; no source loads the preset's hub repo
        (gated for dev, Fill, Canny, Depth), and `preset="tiny"` random weights.

        `text_encoders`: where CLIP-L, T5-XXL and the VAE come from when `source` is a single file
        (default: the preset's hub repo). `offload`: None, "model" or "sequential" (accelerate).
        `dtype`: default bf16 on CUDA, fp32 on CPU.
        """
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny()
        else:
            try:
                pipe = cls._load(source, place.preset, place.dtype, text_encoders, max_sequence_length,
                                 place.load_device)
            except WeightsError as err:
                raise WeightsError(_missing_weights_message(source, place.preset or "schnell", err)) from None
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @classmethod
    def tiny(cls, variant: str = "dev", seed: int = 0) -> "FluxPipeline":
        """Random tiny components (transformer, CLIP, T5, VAE) with tokenizers built in code: runs offline."""
        from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer, tiny_t5_tokenizer
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
        from utils.encoders.vae import AutoencoderKL, VAEConfig

        in_ch = {"fill": 384, "canny": 128, "depth": 128}.get(variant, 64)
        p = PRESETS["tiny"].with_(in_channels=in_ch, guidance_embed=variant != "schnell")
        max_len = SPEC.default("tiny", "max_sequence_length")
        from utils.torch_utils import local_seed

        with local_seed(seed):  # a generator of its own, never the global RNG
            clip_cfg = CLIPTextEncoderConfig.preset("tiny").with_(hidden_size=p.vec_in_dim)
            t5_cfg = T5EncoderConfig.preset("tiny").with_(d_model=p.context_in_dim, max_length=max_len)
            vae_cfg = VAEConfig.preset("tiny-16").with_(channel_mult=(1, 1, 1, 1))  # downscale 8, as the real VAE
            return cls(FluxTransformer(p).eval(), AutoencoderKL(vae_cfg).eval(),
                       CLIPTextEncoder(clip_cfg, tokenizer=tiny_clip_tokenizer(clip_cfg)),
                       T5TextEncoder(t5_cfg, tokenizer=tiny_t5_tokenizer(t5_cfg)),
                       preset="tiny" if variant in ("dev", "tiny") else variant, max_sequence_length=max_len)

    @classmethod
    def _load(cls, source: str | os.PathLike | None, preset: str | None, dtype: torch.dtype,
              text_encoders: str | os.PathLike | None, max_sequence_length: int | None,
              device: torch.device = torch.device("cpu")) -> "FluxPipeline":
        import json

        from utils.encoders.clip import CLIPTextEncoder
        from utils.encoders.t5 import T5TextEncoder
        from utils.encoders.vae import AutoencoderKL

        if source is None:
            source = C.OFFICIAL[preset or "schnell"][0]
        # the transformer is read straight to its device; the other parts are small and moved after
        transformer = FluxTransformer.from_pretrained(source, preset=preset, device=device, dtype=dtype)
        found = C.variant_name(transformer.params)
        if preset is None:
            preset = found if found in VARIANTS else "canny"
        # Where the encoders and the VAE live: the same diffusers folder/repo, or the preset's repo.
        local = Path(os.path.expanduser(str(source)))
        if text_encoders is not None:
            rest = text_encoders
        elif local.is_file() or (local.is_dir() and not (local / "text_encoder").is_dir()):
            rest = C.OFFICIAL.get(preset, C.OFFICIAL["dev"])[0]
        else:
            rest = source
        max_len = max_sequence_length or SPEC.default(preset, "max_sequence_length")
        clip = CLIPTextEncoder.from_pretrained(rest, preset="clip-l", device="cpu", dtype=dtype, subfolder="text_encoder")
        t5 = T5TextEncoder.from_pretrained(rest, preset="t5-xxl", device="cpu", dtype=dtype, subfolder="text_encoder_2",
                                           max_length=max_len)
        vae = AutoencoderKL.from_pretrained(rest, preset="flux", device="cpu", dtype=dtype, subfolder="vae")
        sched = None
        rest_local = Path(os.path.expanduser(str(rest)))
        if (rest_local / "scheduler" / "scheduler_config.json").exists():
            sched = json.loads((rest_local / "scheduler" / "scheduler_config.json").read_text())
        return cls(transformer, vae, clip, t5, preset=preset, scheduler_config=sched, max_sequence_length=max_len)

    def lora_components(self) -> list:
        """The models LoRA files adapt and how their names map (lora.py)."""
        from models.image_generation.flux.lora import lora_components

        return lora_components(self)

    # -- pieces of a call ------------------------------------------------------------------------

    def scheduler(self, name: str | None = None) -> FlowMatchEuler:
        if name is None:
            return FlowMatchEuler.from_diffusers_config(self.scheduler_config)
        sched = get_scheduler(name, self.scheduler_config)
        if not isinstance(sched, FlowMatchEuler):
            raise UserError(f"FLUX is a rectified-flow model and samples with 'flow-euler' only, not '{name}'")
        return sched

    @torch.inference_mode()
    def encode_prompt(self, prompts: Sequence[str], max_sequence_length: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 token features (B, L, 4096), CLIP pooled features (B, 768)), in the transformer's dtype."""
        dev = self.device
        pooled = self.clip.encode(list(prompts)).pooled
        tokens = self.t5.encode(list(prompts), max_length=max_sequence_length or self.max_sequence_length)
        return tokens.last_hidden_state.to(dev, self.dtype), pooled.to(dev, self.dtype)

    def _check_inputs(self, guidance: float | None, image: Any, mask: Any, control: Any,
                      strength: float | None) -> None:
        variant = self.variant
        if variant == "schnell" and guidance is not None:
            raise UserError("FLUX.1 [schnell] is timestep-distilled and takes no guidance scale: leave --guidance "
                            "out (or use a negative prompt with true_cfg for classifier-free guidance)")
        if mask is not None and image is None:
            raise UserError("a mask needs the image it applies to: pass image= (CLI: --image) as well")
        if variant in ("dev", "schnell") and control is not None:
            raise UserError(f"control images are for the canny and depth presets; this is FLUX.1 [{variant}]")
        if mask is not None and variant in ("canny", "depth"):
            raise UserError(f"FLUX.1 {variant.capitalize()} takes no mask: use the fill preset to inpaint")
        if variant == "fill" and (image is None or mask is None):
            raise UserError("FLUX.1 Fill inpaints: pass image= and mask= (white = repaint); CLI: --image --mask")
        if strength is not None and not 0.0 < strength <= 1.0:
            raise UserError(f"strength must be in (0, 1], got {strength}")

    def _control_image(self, image: ImageInput | None, control: ImageInput | None,
                       size: tuple[int, int]) -> torch.Tensor:
        from models.image_generation.flux import control as ctl

        if control is not None:
            return load_image(control, size)
        if image is not None:
            photo = load_image(image, size).to(self.device)
            return ctl.canny_control(photo) if self.variant == "canny" else ctl.estimate_depth(photo)
        what = "an edge map" if self.variant == "canny" else "a depth map"
        raise UserError(f"FLUX.1 {self.variant.capitalize()} needs a control image: pass control= ({what}) or "
                        "image= (a photo it is computed from); CLI: --control or --image")

    def _conditioning(self, image: Any, mask: Any, control: Any, strength: float | None, size: tuple[int, int],
                      batch: int, gens: list[torch.Generator]
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """(extra input channels of Fill/Control, packed clean latents of an img2img or inpainting start,
        packed latent mask of dev/schnell inpainting); each image's VAE sample comes from its generator."""
        variant, d = self.variant, self.vae.config.downscale
        cond = init = blend = None
        if variant == "fill":
            pixels, m = load_image(image, size), load_mask(mask, size)
            masked = pack_latents(self.encode_latents(pixels * (1 - m), gens))
            cond = torch.cat([masked, pack_mask_fill(batch_inputs(m, batch), d).to(self.device)], dim=-1)
            if strength is not None and strength < 1:  # Fill starts from pure noise unless asked otherwise
                init = pack_latents(self.encode_latents(pixels, gens))
        elif variant in ("canny", "depth"):
            hint = self._control_image(image if control is None else None, control, size)
            cond = pack_latents(self.encode_latents(hint, gens))
            if control is not None and image is not None:
                init = pack_latents(self.encode_latents(load_image(image, size), gens))
        elif image is not None:
            init = pack_latents(self.encode_latents(load_image(image, size), gens))
            if mask is not None:
                m = batch_inputs(load_mask(mask, (size[0] // d, size[1] // d)), batch).to(self.device)
                blend = pack_latents(m.expand(-1, LATENT_CHANNELS, -1, -1).contiguous())
        return cond, init, blend

    def _denoiser(self, txt: torch.Tensor, y: torch.Tensor, negative: tuple[torch.Tensor, torch.Tensor] | None,
                  true_cfg: float, guidance: float | None, cond: torch.Tensor | None,
                  latent_hw: tuple[int, int]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The velocity of packed latents at time t (one call, or two with true CFG)."""
        dev, dt = self.device, self.dtype
        ids = image_ids(*latent_hw, device=dev)

        def velocity(lat: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
            b = lat.shape[0]
            inp = lat if cond is None else torch.cat([lat, cond.to(lat.dtype).repeat(b // cond.shape[0], 1, 1)], -1)
            g = None if guidance is None else torch.full((b,), guidance, device=dev, dtype=torch.float32)
            return self.transformer(inp.to(dt), ids[None].expand(b, -1, -1), context,
                                    text_ids(b, context.shape[1], dev), t, pooled, g).float()

        def denoiser(lat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if negative is None or true_cfg == 1.0:
                return velocity(lat, t, txt, y)
            both = velocity(torch.cat([lat, lat]), t, torch.cat([negative[0], txt]), torch.cat([negative[1], y]))
            out_u, out_c = both.chunk(2)
            return cfg_combine(out_u, out_c, true_cfg)

        return denoiser

    # -- the call -------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, image: ImageInput | None = None,
                 mask: ImageInput | None = None, control: ImageInput | None = None, strength: float | None = None,
                 seed: int | Sequence[int] | None = None, *, true_cfg: float | None = None,
                 latents: torch.Tensor | None = None, max_sequence_length: int | None = None,
                 callback: Callable | None = None, interrupt: Any = None, progress: bool = True,
                 output_type: str = "pil") -> ImageOutput:
        """Generate images. `image` + `strength` < 1: img2img; `image` + `mask` (white = repaint):
        inpainting (Fill natively, dev/schnell by latent blending); `control` (Canny/Depth), or
        `image` from which the control is computed. `seed`: image i uses seed + i (or give one seed per
        image); `latents` (B, 16, H/8, W/8) replaces the initial noise. `output_type="latent"` skips decoding."""
        if isinstance(prompt, (list, tuple)) and num_images == 1:
            num_images = len(prompt)
        prompts = as_prompts(prompt, num_images)
        b = len(prompts)
        n = int(self.default("steps", steps))
        if n < 1:
            raise UserError(f"steps must be at least 1, got {n}")
        self._check_inputs(guidance, image, mask, control, strength)
        g = float(self.default("guidance", guidance)) if self.params.guidance_embed else None
        height, width = output_size(height, width, image if image is not None else control, self.pixel_multiple,
                                    self.default_size, "FLUX")
        d = self.vae.config.downscale
        h, w = height // d, width // d
        gens = self.generators(seed, b)

        with self.session():
            txt, y = self.encode_prompt(prompts, max_sequence_length)
            neg = None
            if negative_prompt is not None:
                neg = self.encode_prompt(as_prompts(negative_prompt, b), max_sequence_length)
            cfg = float(self.default("true_cfg", true_cfg)) if neg is not None else 1.0

            # the initial noise first (image i from generator i), then any VAE samples
            if latents is not None:
                noise = latents.float().to(self.device)
                if tuple(noise.shape) != (b, LATENT_CHANNELS, h, w):
                    raise UserError(f"latents must have shape {(b, LATENT_CHANNELS, h, w)}, got {tuple(noise.shape)}")
            else:
                noise = initial_noise((b, LATENT_CHANNELS, h, w), gens, self.device)
            x_noise = pack_latents(noise)
            cond, init, blend = self._conditioning(image, mask, control, strength, (height, width), b, gens)

            # schedule: linspace(1, 1/n, n), shifted for the image token count (dev family)
            sched = self.scheduler(scheduler)
            mu = sched.mu_for(x_noise.shape[1]) if sched.use_dynamic_shifting else None
            schedule = sched.schedule(sigmas=sigmas(n), mu=mu)
            start, x = 0, x_noise
            if init is not None:
                s = 1.0 if strength is None else strength
                if self.variant in ("dev", "schnell") and strength is None and blend is None:
                    s = 0.6  # plain img2img without a strength: keep the layout of the input
                start = img2img_start(n, s)
                if start >= n:
                    raise UserError(f"strength {s} with {n} steps leaves no step to run: raise strength or steps")
                if start > 0 or blend is None:
                    x = sched.add_noise(init, x_noise, start, schedule)
            inpaint = InpaintBlend(init, blend, x_noise) if blend is not None else None

            x = sample(self._denoiser(txt, y, neg, cfg, g, cond, (h, w)), sched, schedule, x, generator=gens,
                       start=start, callback=callback, interrupt=interrupt, progress=progress,
                       model_time=lambda t: (t / 1000.0).to(self.device), inpaint=inpaint)
            z = unpack_latents(x.float(), h, w)
            if output_type == "latent":
                return self.output(None, z)
            return self.output(self.decode_latents(z), z)


# -- helpers ----------------------------------------------------------------------------------------


def _missing_weights_message(source: Any, preset: str, err: Exception) -> str:
    repo, file, gated = C.OFFICIAL.get(preset, C.OFFICIAL["schnell"])
    gate = (f" ({repo} is gated: accept its licence at https://huggingface.co/{repo}, then `hf auth login` or "
            "set HF_TOKEN)" if gated else "")
    tail = "; --preset tiny runs without weights"
    text = str(err)
    if "not in the local cache" in text or "could not be fetched" in text:
        what = f"'{source}'" if source is not None else f"FLUX.1 [{preset}]"
        why = "offline mode is on" if "offline" in text.lower() else "the hub cannot be reached"
        return (f"{what} weights are not in the local cache and {why}: download them once with "
                f"`hf download {repo}`{gate} (or only {file} plus its text_encoder*/, tokenizer*/ and vae/ folders), "
                f"or pass --weights <file or folder>{tail}")
    if "gated" in text and not gate:
        return text + tail
    return f"{text}{tail}" if source is not None or not gated else f"{text}{gate}{tail}"


__all__ = ["FluxPipeline", "SCHEDULER_DEV", "SCHEDULER_SCHNELL", "VARIANTS"]
