"""The DALL-E 3 stand-in: rewrite the prompt, filter it, sample an open base model, decode, check the image.

One call runs, in order:

1. the prompt filter on the user's prompts (`utils.safety.PromptFilter`; a hit is a `SafetyRefusal`,
   exit code 3 in the CLIs, before anything is sampled);
2. prompt upsampling (`rewriter.py`: the deterministic template, or a local causal LM), then the
   filter again on what it wrote;
3. sampling with the base: the preset's T5-conditioned model of the zoo (SD3.5 or FLUX.1), or, with
   `fast=True`, SDXL with the LCM-LoRA and the LCM scheduler (4 steps, no guidance);
4. decoding: 4-channel latents (the SDXL fast mode) with OpenAI's consistency decoder in 1 or 2 steps
   (`decoder="consistency"`, the default there), or with the base's VAE (`decoder="vae"`; the only
   choice for the 16-channel latents of SD3 and FLUX);
5. the CLIP safety checker on the decoded images (`utils.safety.SafetyChecker`; a flagged image is a
   `SafetyRefusal` and nothing is returned, so nothing is written).

Seeds: image i samples with seed + i (the base's rule) and the consistency decoder draws its noise
from a second generator seeded seed + i as well, so image i of a batch is the image made alone with
seed + i. The rewritten prompts come back with the images (`DallE3Output.revised_prompts`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from models.image_generation.dalle3.rewriter import PromptRewriter, TemplateRewriter, load_rewriter
from models.image_generation.dalle3.spec import (BASES, CONSISTENCY_DECODER, FAST_BASE, LCM_LORA, SAFETY_CHECKER,
                                                 SPEC)
from utils.diffusion.inputs import as_prompts
from utils.errors import UserError
from utils.outputs import ImageOutput

DECODERS = ("auto", "consistency", "vae")


@dataclass
class DallE3Output(ImageOutput):
    """The images, and the prompts they were made from."""

    prompts: list[str] | None = None
    """The prompts as the user gave them, one per image."""
    revised_prompts: list[str] | None = None
    """The prompts the base model was given (after rewriting), one per image."""


class DallE3Pipeline:
    """Prompt rewriting + a base of the zoo + consistency decoding + safety filters; see the module docstring."""

    spec = SPEC

    def __init__(self, base: Any, *, fast: Any = None, decoder: Any = None, safety_checker: Any = None,
                 prompt_filter: Any = None, rewriter: PromptRewriter | None = None, preset: str = "tiny",
                 sources: dict | None = None, device: torch.device | None = None, dtype: torch.dtype | None = None):
        from utils.safety import PromptFilter

        self.base, self.fast, self.decoder, self.safety_checker = base, fast, decoder, safety_checker
        self.prompt_filter = prompt_filter if prompt_filter is not None else PromptFilter()
        self.rewriter = rewriter if rewriter is not None else TemplateRewriter()
        self.preset = preset
        self.sources = dict(sources or {})
        """Where parts not loaded yet come from: 'fast', 'lcm_lora', 'decoder', 'safety_checker' (False: off)."""
        self._device, self._dtype = device, dtype
        self._rewriters: dict[str, PromptRewriter] = {}

    # -- facts ----------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    def default(self, key: str, value: Any = None) -> Any:
        return value if value is not None else self.spec.default(self.preset, key)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DallE3Pipeline":
        for part in (self.base, self.fast, self.decoder, self.safety_checker):
            if part is not None:
                part.to(device, dtype) if dtype is not None else part.to(device)
        self._device = torch.device(device) if device is not None else self._device
        self._dtype = dtype or self._dtype
        return self

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        fast_base: str | os.PathLike | None = None, lcm_lora: str | os.PathLike | None = None,
                        decoder: str | os.PathLike | None = None, safety_checker: "str | os.PathLike | bool" = True,
                        blocklist: Sequence[str] | str | os.PathLike | None = None,
                        rewrite_model: "str | os.PathLike | PromptRewriter | None" = None) -> "DallE3Pipeline":
        """The preset's base (SD3.5 or FLUX.1 from `source` or its hub repo); the other parts load on first
        use: `fast_base` (SDXL base) + `lcm_lora` for `fast=True`, `decoder` (openai/consistency-decoder),
        `safety_checker` (CompVis/stable-diffusion-safety-checker; False turns the image check off).
        `blocklist`: the prompt filter's terms (a list, or a file of one term per line; default: the
        built-in list). `rewrite_model`: a causal LM (repo id or folder) for prompt rewriting (default: the
        template). No source and `preset='tiny'`: random tiny parts, offline, in seconds."""
        from utils.safety import PromptFilter
        from utils.torch_utils import resolve_device, resolve_dtype

        name = SPEC.check_preset(preset)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.bfloat16)
        if blocklist is None:
            pf = PromptFilter()
        elif isinstance(blocklist, (str, os.PathLike)):
            pf = PromptFilter.from_file(blocklist)
        else:
            pf = PromptFilter(blocklist)
        rewriter = load_rewriter(rewrite_model, device=str(dev))
        if source is None and name == "tiny":
            return cls.tiny(prompt_filter=pf, rewriter=rewriter, safety=safety_checker is not False).to(dev, dt)
        model, base_preset = BASES[name]
        base_cls = _base_class(model)
        base = base_cls.from_pretrained(source, preset=base_preset, device=dev, dtype=dt)
        sources = {"fast": fast_base or FAST_BASE, "lcm_lora": lcm_lora or LCM_LORA,
                   "decoder": decoder or CONSISTENCY_DECODER,
                   "safety_checker": SAFETY_CHECKER if safety_checker is True else safety_checker}
        return cls(base, prompt_filter=pf, rewriter=rewriter, preset=name, sources=sources, device=dev, dtype=dt)

    @classmethod
    def tiny(cls, prompt_filter: Any = None, rewriter: PromptRewriter | None = None,
             safety: bool = True) -> "DallE3Pipeline":
        """Random tiny parts: the SD3 base (with T5), the SDXL fast base, the consistency decoder and the
        safety checker, all offline."""
        from models.image_generation.stable_diffusion.pipeline import SD3Pipeline, SDXLPipeline
        from utils.encoders.consistency_decoder import ConsistencyDecoder
        from utils.safety import SafetyChecker

        return cls(SD3Pipeline.from_pretrained(preset="tiny", device="cpu"),
                   fast=SDXLPipeline.from_pretrained(preset="tiny", device="cpu"),
                   decoder=ConsistencyDecoder.from_pretrained(preset="tiny", device="cpu"),
                   safety_checker=SafetyChecker.from_pretrained(preset="tiny", device="cpu") if safety else None,
                   prompt_filter=prompt_filter, rewriter=rewriter, preset="tiny",
                   sources={"safety_checker": safety})

    def _fast(self):
        if self.fast is None:
            from models.image_generation.stable_diffusion.pipeline import SDXLPipeline

            pipe = SDXLPipeline.from_pretrained(self.sources["fast"], preset="sdxl-base", device=self._device,
                                                dtype=self._dtype)
            pipe.load_lora(self.sources["lcm_lora"], 1.0, name="lcm")
            pipe.fuse_lora()
            self.fast = pipe
        return self.fast

    def _decoder(self):
        if self.decoder is None:
            from utils.encoders.consistency_decoder import ConsistencyDecoder

            self.decoder = ConsistencyDecoder.from_pretrained(self.sources["decoder"], device=self._device,
                                                              dtype=self._dtype)
        return self.decoder

    def _checker(self):
        if self.safety_checker is None and self.sources.get("safety_checker") not in (None, False, True):
            from utils.safety import SafetyChecker

            self.safety_checker = SafetyChecker.from_pretrained(self.sources["safety_checker"], device=self._device,
                                                                dtype=self._dtype)
        return self.safety_checker

    def _rewriter(self, rewrite_model: Any) -> PromptRewriter:
        if rewrite_model is None:
            return self.rewriter
        key = str(rewrite_model)
        if key not in self._rewriters:
            self._rewriters[key] = load_rewriter(rewrite_model, device=str(self._device or "cpu"))
        return self._rewriters[key]

    # -- a call -----------------------------------------------------------------------------------

    def rewrite(self, prompts: Sequence[str], rewrite_model: Any = None) -> list[str]:
        """The prompts the base is given: each distinct prompt rewritten once, then filtered again."""
        rewriter = self._rewriter(rewrite_model)
        done: dict[str, str] = {}
        for p in prompts:
            if p not in done:
                done[p] = rewriter.rewrite(p)
        out = [done[p] for p in prompts]
        self.prompt_filter.refuse_blocked(out, what="rewritten prompt")
        return out

    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None,
                 seed: int | Sequence[int] | None = None, rewrite: bool | None = None,
                 rewrite_model: "str | os.PathLike | PromptRewriter | None" = None, decoder: str | None = None,
                 decoder_steps: int | None = None, fast: bool | None = None, progress: bool = True) -> DallE3Output:
        """Generate. `rewrite=False` gives the base the prompt as written; `rewrite_model` a causal LM for
        this call. `fast=True`: SDXL + LCM-LoRA, 4 steps. `decoder`: 'consistency' (4-channel latents only:
        the fast mode), 'vae', or None/'auto' (consistency where it applies). `decoder_steps`: 1 or 2."""
        decoder = self.default("decoder", decoder)
        if decoder not in DECODERS:
            raise UserError(f"--decoder must be one of {', '.join(DECODERS[1:])}, got '{decoder}'")
        fast = bool(fast)
        if decoder == "consistency" and not fast:
            raise UserError(f"the consistency decoder decodes 4-channel SD latents, and the '{self.preset}' base "
                            "makes 16-channel ones: add --fast (SDXL) or use --decoder vae")
        decoder_steps = int(self.default("decoder_steps", decoder_steps))
        if decoder_steps not in (1, 2):
            raise UserError(f"the consistency decoder takes 1 or 2 steps (its distilled schedule), got {decoder_steps}")
        prompts = as_prompts(prompt, num_images)
        self.prompt_filter.refuse_blocked(prompts)
        revised = self.rewrite(prompts, rewrite_model) if self.default("rewrite", rewrite) else list(prompts)
        batch = len(prompts)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)).item())

        use_consistency = fast and decoder in ("auto", "consistency")
        # every part loads before sampling, so a missing download fails before minutes of work
        checker = self._checker()
        dec = self._decoder() if use_consistency else None
        if fast:
            pipe = self._fast()
            steps = int(self.default("fast_steps", steps))
            guidance = float(self.default("fast_guidance", guidance))
            scheduler = scheduler or "lcm"
        else:
            pipe = self.base
        res = pipe(prompt=revised, negative_prompt=negative_prompt, height=height, width=width, steps=steps,
                   guidance=guidance, scheduler=scheduler, seed=seed, output_type="latent", progress=progress)
        latents = res.latents
        with torch.inference_mode():
            if dec is not None:
                from utils.diffusion.noise import generators

                z = latents.float() / pipe.vae.config.scaling_factor * dec.config.scaling_factor
                pixels = dec.decode_latents(z.to(dec.device, dec.dtype), generators(seed, batch),
                                            steps=decoder_steps)
            else:
                with pipe.session():
                    pixels = pipe.decode_latents(latents)
        out = DallE3Output.from_tensor(pixels.float(), latents=latents, prompts=list(prompts),
                                       revised_prompts=revised)
        if checker is not None:
            checker.refuse_unsafe(out.pixels)
        return out


def _base_class(model: str):
    if model == "flux":
        from models.image_generation.flux.pipeline import FluxPipeline

        return FluxPipeline
    from models.image_generation.stable_diffusion.pipeline import SD3Pipeline

    return SD3Pipeline


__all__ = ["DECODERS", "DallE3Output", "DallE3Pipeline"]
