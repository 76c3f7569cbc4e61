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
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from models.image_generation.flux import convert as C
from models.image_generation.flux.model import PRESETS, FluxParams, FluxTransformer
from models.image_generation.flux.spec import SPEC
from utils.outputs import ImageOutput
from utils.diffusion import FlowMatchEuler, InpaintBlend, cfg_combine, get_scheduler, sample
from utils.errors import UserError, WeightsError
from utils.nn import attention_backend, grid_ids
from utils.torch_utils import make_generator, resolve_device, resolve_dtype

VARIANTS = tuple(p for p in SPEC.presets if p != "tiny")

# Scheduler configs of the hub repos (scheduler/scheduler_config.json).
SCHEDULER_DEV = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
                 "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096}
SCHEDULER_SCHNELL = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}


ImageInput = Any  # a path, a PIL image, or a (B, 3, H, W) tensor in [0, 1]

# -- latent packing ----------------------------------------------------------------------------------


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) latents -> (B, h/2 * w/2, 4C) tokens, each a 2x2 patch (channel-major, then row, col)."""
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of `pack_latents` for latents of h x w (latent pixels)."""
    b, _, d = x.shape
    c = d // 4
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def image_ids(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Position ids (h/2 * w/2, 3) of packed image tokens: (0, row, col)."""
    return grid_ids(h // 2, w // 2, device=device)


def pack_mask_fill(mask: torch.Tensor, downscale: int) -> torch.Tensor:
    """Fill's mask channels: (B, 1, H, W) pixel mask -> each latent pixel's downscale² mask values as
    channels (B, d², H/d, W/d), then 2x2-packed to (B, L, 4 d²)."""
    b, _, hh, ww = mask.shape
    d = downscale
    m = mask[:, 0].view(b, hh // d, d, ww // d, d).permute(0, 2, 4, 1, 3).reshape(b, d * d, hh // d, ww // d)
    return pack_latents(m)


# -- inputs -----------------------------------------------------------------------------------------


def _common():
    # The input helpers are shared with the SDXL/SD3 pipelines (one implementation in the zoo).
    from utils.diffusion import pipeline_utils as common

    return common


def _first_size(image: ImageInput) -> tuple[int, int]:
    """(height, width) of an image input."""
    if isinstance(image, torch.Tensor):
        return int(image.shape[-2]), int(image.shape[-1])
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        if not Path(image).is_file():
            raise UserError(f"image file not found: {image}")
        with Image.open(image) as im:
            return im.height, im.width
    return image.height, image.width


class _VAERunner(nn.Module):
    """The VAE's encode/decode behind a forward(), so accelerate's offload hooks see every call."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, op: str = "decode") -> torch.Tensor:
        if op == "decode":
            return self.vae.decode_latents(x)
        return self.vae.encode(x).moments


class FluxPipeline:
    """A FLUX.1 transformer, the 16-channel VAE, CLIP-L and T5-XXL, and the flow-matching sampler."""

    def __init__(self, transformer: FluxTransformer, vae: nn.Module, clip: nn.Module, t5: nn.Module,
                 preset: str = "dev", scheduler_config: dict | None = None, max_sequence_length: int | None = None):
        self.transformer, self.vae, self.clip, self.t5 = transformer, vae, clip, t5
        self.preset = preset
        p = transformer.params
        default_sched = SCHEDULER_DEV if p.guidance_embed else SCHEDULER_SCHNELL
        self.scheduler_config = dict(scheduler_config or default_sched)
        self.max_sequence_length = max_sequence_length or SPEC.default(preset, "max_sequence_length", 512)
        self._vae_runner = _VAERunner(vae)
        self._execution_device: torch.device | None = None
        self.attention: str | None = None

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
    def device(self) -> torch.device:
        if self._execution_device is not None:
            return self._execution_device
        return next(p.device for p in self.transformer.parameters())

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def pixel_multiple(self) -> int:
        """Image sides must be multiples of this: VAE downscale (8) times the 2x2 packing = 16."""
        return self.vae.config.downscale * 2

    @property
    def default_size(self) -> int:
        return 1024 if self.preset != "tiny" else 4 * self.pixel_multiple

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "FluxPipeline":
        for m in (self.transformer, self.vae, self.clip, self.t5):
            m.to(device=device, dtype=dtype)
        return self

    # -- memory and speed ---------------------------------------------------------------------------

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> "FluxPipeline":
        """Keep every model on the CPU and move each to `device` only while it runs (accelerate hooks):
        the peak is the largest model (the transformer, 24 GB in bf16) instead of all four (33 GB)."""
        from accelerate import cpu_offload_with_hook

        dev = torch.device(device)
        hook = None
        for m in (self.clip, self.t5, self.transformer, self._vae_runner):
            m.to("cpu")
            _, hook = cpu_offload_with_hook(m, dev, prev_module_hook=hook)
        self._execution_device = dev
        return self

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> "FluxPipeline":
        """Stream each layer's weights to `device` when it runs (accelerate cpu_offload): a few GB of
        GPU memory, much slower. The VAE (0.2 GB, whose attention reads its weights directly) moves whole."""
        from accelerate import cpu_offload, cpu_offload_with_hook

        dev = torch.device(device)
        for m in (self.clip, self.t5, self.transformer):
            m.to("cpu")
            cpu_offload(m, execution_device=dev)
            _pin_device(m, dev)
        self._vae_runner.to("cpu")
        cpu_offload_with_hook(self._vae_runner, dev)
        self._execution_device = dev
        return self

    def enable_vae_tiling(self, tile_latent: int = 64, overlap_latent: int = 16) -> "FluxPipeline":
        """Decode (and encode) large images in overlapping tiles."""
        self.vae.enable_tiling(tile_latent, overlap_latent)
        return self

    def compile(self, **kwargs: Any) -> "FluxPipeline":
        """torch.compile the transformer blocks (the first call pays the compilation)."""
        self.transformer.compile_blocks(**kwargs)
        return self

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
        SPEC.check_preset(preset)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.bfloat16)
        if source is None and preset == "tiny":
            pipe = cls.tiny()
            pipe.to(device=dev if offload is None else "cpu", dtype=dt)
        else:
            try:
                pipe = cls._load(source, preset, dt, text_encoders, max_sequence_length,
                                 dev if offload is None else torch.device("cpu"))
            except WeightsError as err:
                raise WeightsError(_missing_weights_message(source, preset or "schnell", err)) from None
            if offload is None:
                pipe.to(device=dev)
        if offload == "model":
            pipe.enable_model_cpu_offload(dev)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(dev)
        elif offload is not None:
            raise UserError(f"offload must be 'model' or 'sequential', got '{offload}'")
        if vae_tiling:
            pipe.enable_vae_tiling()
        if compile:
            pipe.compile()
        pipe.attention = attention
        return pipe

    @classmethod
    def tiny(cls, variant: str = "dev", seed: int = 0) -> "FluxPipeline":
        """Random tiny components (transformer, CLIP, T5, VAE) with tokenizers built in code: runs offline."""
        from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer, tiny_t5_tokenizer
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
        from utils.encoders.vae import AutoencoderKL, VAEConfig

        base = PRESETS["tiny"]
        in_ch = {"fill": 384, "canny": 128, "depth": 128}.get(variant, 64)
        p = base.with_(in_channels=in_ch, guidance_embed=variant != "schnell")
        torch.manual_seed(seed)
        clip_cfg = CLIPTextEncoderConfig.preset("tiny").with_(hidden_size=p.vec_in_dim)
        t5_cfg = T5EncoderConfig.preset("tiny").with_(d_model=p.context_in_dim, max_length=SPEC.default("tiny", "max_sequence_length"))
        vae_cfg = VAEConfig.preset("tiny-16").with_(channel_mult=(1, 1, 1, 1))  # downscale 8, as the real VAE
        return cls(FluxTransformer(p).eval(), AutoencoderKL(vae_cfg).eval(),
                   CLIPTextEncoder(clip_cfg, tokenizer=tiny_clip_tokenizer(clip_cfg)),
                   T5TextEncoder(t5_cfg, tokenizer=tiny_t5_tokenizer(t5_cfg)),
                   preset="tiny" if variant in ("dev", "tiny") else variant,
                   max_sequence_length=SPEC.default("tiny", "max_sequence_length"))

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
        max_len = max_sequence_length or SPEC.default(preset, "max_sequence_length", 512)
        clip = CLIPTextEncoder.from_pretrained(rest, preset="clip-l", device="cpu", dtype=dtype, subfolder="text_encoder")
        t5 = T5TextEncoder.from_pretrained(rest, preset="t5-xxl", device="cpu", dtype=dtype, subfolder="text_encoder_2",
                                           max_length=max_len)
        vae = AutoencoderKL.from_pretrained(rest, preset="flux", device="cpu", dtype=dtype, subfolder="vae")
        sched = None
        rest_local = Path(os.path.expanduser(str(rest)))
        if (rest_local / "scheduler" / "scheduler_config.json").exists():
            sched = json.loads((rest_local / "scheduler" / "scheduler_config.json").read_text())
        return cls(transformer, vae, clip, t5, preset=preset, scheduler_config=sched, max_sequence_length=max_len)

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

    def _encode_images(self, images: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        """Pixels in [-1, 1] -> normalised latents, each sample drawn with its own generator."""
        from utils.encoders.vae import DiagonalGaussian

        vae_dtype = next(self.vae.parameters()).dtype
        out = []
        for i in range(images.shape[0]):
            moments = self._vae_runner(images[i:i + 1].to(self.device, vae_dtype), op="encode")
            z = DiagonalGaussian(moments.float()).sample(gens[i % len(gens)])
            out.append(self.vae.scale_latents(z))
        return torch.cat(out)

    def _size(self, height: int | None, width: int | None, image: ImageInput | None) -> tuple[int, int]:
        m = self.pixel_multiple
        if (height is None or width is None) and image is not None:
            ih, iw = _first_size(image)
            # an input image sets the size, snapped down to the model's multiple
            height = height or max(m, ih // m * m)
            width = width or max(m, iw // m * m)
        height = height or self.default_size
        width = width or self.default_size
        _common().check_size(height, width, m, "FLUX")
        return height, width

    def _control_image(self, image: ImageInput | None, control: ImageInput | None, size: tuple[int, int],
                       batch: int) -> torch.Tensor:
        from models.image_generation.flux import control as ctl

        common = _common()
        if control is not None:
            x = common.load_image(control, size)
        elif image is not None:
            photo = common.load_image(image, size).to(self.device)
            x = ctl.canny_control(photo) if self.variant == "canny" else ctl.estimate_depth(photo)
        else:
            what = "an edge map" if self.variant == "canny" else "a depth map"
            raise UserError(f"FLUX.1 {self.variant.capitalize()} needs a control image: pass control= ({what}) or "
                            "image= (a photo it is computed from); CLI: --control or --image")
        return _batch(x, batch)

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
        `image` from which the control is computed. `seed` (or one per image) makes it reproducible;
        `latents` (B, 16, H/8, W/8) replaces the initial noise. `output_type="latent"` skips decoding."""
        variant = self.variant
        if isinstance(prompt, (list, tuple)) and num_images == 1:
            num_images = len(prompt)
        prompts = _common().as_prompts(prompt, num_images)
        b = len(prompts)
        n = int(steps if steps is not None else SPEC.default(self.preset, "steps", SPEC.default(variant, "steps", 28)))
        if n < 1:
            raise UserError(f"steps must be at least 1, got {n}")
        if variant == "schnell" and guidance is not None:
            raise UserError("FLUX.1 [schnell] is timestep-distilled and takes no guidance scale: leave --guidance "
                            "out (or use a negative prompt with true_cfg for classifier-free guidance)")
        g = float(guidance if guidance is not None else SPEC.default(self.preset, "guidance",
                                                                    SPEC.default(variant, "guidance", 3.5)))
        if mask is not None and image is None:
            raise UserError("a mask needs the image it applies to: pass image= (CLI: --image) as well")
        if variant != "fill" and variant not in ("canny", "depth") and control is not None:
            raise UserError(f"control images are for the canny and depth presets; this is FLUX.1 [{variant}]")
        if mask is not None and variant in ("canny", "depth"):
            raise UserError(f"FLUX.1 {variant.capitalize()} takes no mask: use the fill preset to inpaint")
        if variant == "fill" and (image is None or mask is None):
            raise UserError("FLUX.1 Fill inpaints: pass image= and mask= (white = repaint); CLI: --image --mask")
        if strength is not None and not 0.0 < strength <= 1.0:
            raise UserError(f"strength must be in (0, 1], got {strength}")
        height, width = self._size(height, width, image if image is not None else control)
        dev, dt = self.device, self.dtype
        d = self.vae.config.downscale
        h, w = height // d, width // d
        gens = _generators(seed, b)
        common = _common()

        with attention_backend(self.attention or "auto"):
            txt, y = self.encode_prompt(prompts, max_sequence_length)
            neg = None
            if negative_prompt is not None:
                neg = self.encode_prompt(common.as_prompts(negative_prompt, b), max_sequence_length)
            cfg = float(true_cfg if true_cfg is not None else (SPEC.default(self.preset, "true_cfg") if neg is not None else 1.0))

            # initial noise, drawn on the CPU per image: a seed gives the same image on any device
            if latents is not None:
                noise = latents.float().to(dev)
                if tuple(noise.shape) != (b, 16, h, w):
                    raise UserError(f"latents must have shape {(b, 16, h, w)}, got {tuple(noise.shape)}")
            else:
                noise = torch.cat([torch.randn((1, 16, h, w), generator=gens[i]) for i in range(b)]).to(dev)
            x_noise = pack_latents(noise)

            # conditioning channels
            cond = None
            init = None  # packed clean latents for img2img / inpainting
            blend = None
            if variant == "fill":
                pixels = _batch(common.load_image(image, (height, width)), b).to(dev)
                m = _batch(_pixel_mask(mask, (height, width)), b).to(dev)
                masked_latents = self._encode_images(pixels * (1 - m), gens)
                cond = torch.cat([pack_latents(masked_latents), pack_mask_fill(m, d)], dim=-1)
                if strength is not None and strength < 1:
                    init = pack_latents(self._encode_images(pixels, gens))
            elif variant in ("canny", "depth"):
                ctl_pixels = self._control_image(image if control is None else None, control, (height, width), b)
                cond = pack_latents(self._encode_images(ctl_pixels.to(dev), gens))
                if control is not None and image is not None:
                    init = pack_latents(self._encode_images(_batch(common.load_image(image, (height, width)), b).to(dev), gens))
            elif image is not None:
                init = pack_latents(self._encode_images(_batch(common.load_image(image, (height, width)), b).to(dev), gens))
                if mask is not None:
                    lm = _batch(common.load_mask(mask, (h, w)), b).to(dev)
                    blend = pack_latents(lm.expand(-1, 16, -1, -1).contiguous())

            # schedule: linspace(1, 1/n, n), shifted for the image token count (dev family)
            sched = self.scheduler(scheduler)
            seq_len = x_noise.shape[1]
            sigmas = torch.linspace(1.0, 1.0 / n, n).numpy()
            schedule = sched.schedule(sigmas=sigmas, mu=sched.mu_for(seq_len) if sched.use_dynamic_shifting else None)
            start = 0
            x = x_noise
            if init is not None:
                s = 1.0 if strength is None else strength
                if variant not in ("fill", "canny", "depth") and strength is None and blend is None:
                    s = 0.6  # plain img2img without a strength: keep the layout of the input
                start = _img2img_start(n, s)
                if start >= n:
                    raise UserError(f"strength {s} with {n} steps leaves no step to run: raise strength or steps")
                x = sched.add_noise(init, x_noise, start, schedule) if start > 0 or blend is None else x_noise
            inpaint = InpaintBlend(init, blend, x_noise) if blend is not None else None

            ids = image_ids(h, w, device=dev)[None].expand(b, -1, -1)
            guidance_vec = torch.full((b,), g, device=dev, dtype=torch.float32) if self.params.guidance_embed else None

            def velocity(lat: torch.Tensor, t: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
                inp = lat if cond is None else torch.cat([lat, cond.to(lat.dtype)], dim=-1)
                txt_ids = torch.zeros(lat.shape[0], context.shape[1], 3, device=dev)
                gv = None if guidance_vec is None else guidance_vec[:1].expand(lat.shape[0])
                return self.transformer(inp.to(dt), ids[:1].expand(lat.shape[0], -1, -1), context, txt_ids,
                                        t, pooled, gv).float()

            def denoiser(lat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                if neg is None or cfg == 1.0:
                    return velocity(lat, t, txt, y)
                both = velocity(torch.cat([lat, lat]), t, torch.cat([neg[0], txt]), torch.cat([neg[1], y]))
                out_u, out_c = both.chunk(2)
                return cfg_combine(out_u, out_c, cfg)

            x = sample(denoiser, sched, schedule, x, generator=gens, start=start,
                       callback=callback, interrupt=interrupt, progress=progress,
                       model_time=lambda t: (t / 1000.0).to(dev), inpaint=inpaint)
            z = unpack_latents(x.float(), h, w)
            if output_type == "latent":
                return ImageOutput(images=[], latents=z)
            vae_dtype = next(self.vae.parameters()).dtype
            pixels = self._vae_runner(z.to(self.device, vae_dtype), op="decode")
        return common.to_output(pixels, z)


# -- helpers ----------------------------------------------------------------------------------------


def _generators(seed: int | Sequence[int] | None, batch: int) -> list[torch.Generator]:
    """One CPU generator per image: seed, seed + 1, ... (or the given list); a fresh seed when None."""
    if isinstance(seed, (list, tuple)):
        if len(seed) != batch:
            raise UserError(f"got {len(seed)} seeds for {batch} images: give one seed or one per image")
        return [make_generator(int(s)) for s in seed]
    base = int(torch.randint(0, 2**31 - 1, (1,)).item()) if seed is None else int(seed)
    return [make_generator(base + i) for i in range(batch)]


def _pin_device(module: nn.Module, device: torch.device) -> None:
    """After sequential offload the parameters sit on the meta device, so a `device` property that reads
    them (the text encoders move their inputs there) would say 'meta': report the execution device."""
    cls = type(module)
    if isinstance(getattr(cls, "device", None), property):
        module.__class__ = type(cls.__name__, (cls,), {"device": property(lambda self: device)})


def _batch(x: torch.Tensor, b: int) -> torch.Tensor:
    if x.shape[0] == b:
        return x
    if x.shape[0] == 1:
        return x.expand(b, *x.shape[1:]).contiguous()
    raise UserError(f"got {x.shape[0]} input images for {b} outputs: give one image or one per output")


def _pixel_mask(mask: ImageInput, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) binary mask at pixel size (Fill reads the mask at full resolution)."""
    return _common().load_mask(mask, size)


def _img2img_start(num_steps: int, strength: float) -> int:
    # FLUX's img2img (BFL and diffusers) skips int(n - n * strength) steps, without rounding n * strength first.
    return int(max(num_steps - min(num_steps * strength, num_steps), 0))


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


__all__ = ["FluxPipeline", "image_ids", "pack_latents", "pack_mask_fill", "unpack_latents"]
