"""`DiffusionPipeline`: what every diffusion pipeline of the zoo shares, whatever it generates.

A subclass names its models in `components` (in the order a call runs them), its denoiser in
`denoiser_name`, and its package's `ModelSpec` in `spec`; it keeps its own `__init__`, a classmethod
`tiny()` (random tiny components, what `preset="tiny"` loads), its loaders, and `__call__`, whose body
runs inside `with self.session():`. Its `from_pretrained` is `resolve()`, then `tiny()` or its
loader, then `configure()`. The base gives it:

- `device`, `dtype`, `to()` over every component (and sub-pipelines, e.g. SDXL's refiner);
- `enable_model_cpu_offload()`, `enable_sequential_cpu_offload()` (accelerate hooks),
  `enable_vae_tiling()`, `compile()`, and the `attention` backend used inside a call;
- `resolve()` and `configure()`: the head and the tail of `from_pretrained` (preset check and
  default, device, dtype; then placement, offload, tiling, compile, attention);
- `default(key, value)`: a call argument, else the preset's default from the spec (spec.py is the
  one home of per-preset steps, guidance, sequence lengths);
- `generators(seed, batch)`: the one meaning of `seed` (image i uses seed + i; see `noise.py`);
- `session()`: the context of one call (inference mode, attention backend, offloaded models back
  to the CPU at the end);
- `decode_latents()`, `encode_latents()`, `output()`: the VAE and the output type, through the
  offload hooks. They assume a KL VAE and images; video, pixel-space or 3D pipelines override them.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from utils.diffusion import noise
from utils.diffusion.offload import MethodCalls, model_offload, sequential_offload
from utils.errors import UserError
from utils.outputs import ImageOutput
from utils.torch_utils import Generators, resolve_device, resolve_dtype

OFFLOAD_MODES = ("model", "sequential")


class Placement(NamedTuple):
    """Where `from_pretrained` puts a pipeline: the preset (None: the weights tell), the execution
    device and dtype, and the device the weights are read to (the CPU when offloading)."""

    preset: str | None
    device: torch.device
    dtype: torch.dtype
    load_device: torch.device


def _dtype_of(module: nn.Module) -> torch.dtype:
    dt = getattr(module, "dtype", None)
    return dt if isinstance(dt, torch.dtype) else next(module.parameters()).dtype


def _device_of(module: nn.Module) -> torch.device:
    dev = getattr(module, "device", None)
    return dev if isinstance(dev, torch.device) else next(module.parameters()).device


class DiffusionPipeline:
    """The shared half of a diffusion pipeline; see the module docstring."""

    spec: ClassVar[Any] = None
    """The package's `ModelSpec` (`check_preset`, `default`, `default_preset`)."""
    components: ClassVar[tuple[str, ...]] = ()
    """Attribute names of the models in the order a call runs them; an attribute may hold a list of
    models, or None for a model that is absent. The one named 'vae' is called through its methods."""
    denoiser_name: ClassVar[str] = "transformer"
    """The component whose device and dtype are the pipeline's."""
    cuda_dtype: ClassVar[torch.dtype] = torch.bfloat16
    """The default dtype on CUDA (float32 on the CPU)."""

    preset: str = "tiny"
    attention: str | None = None
    """Attention backend inside calls ('sdpa', 'flash', ...); None keeps the process-wide choice."""
    _execution_device: torch.device | None = None
    _offload: str | None = None
    _hooks: tuple = ()

    # -- components -------------------------------------------------------------------------------

    def named_components(self) -> list[tuple[str, nn.Module]]:
        """(name, model) of every present component, in call order; list entries as 'name.i'."""
        found = []
        for name in self.components:
            value = getattr(self, name, None)
            if isinstance(value, (list, tuple)):
                found += [(f"{name}.{i}", m) for i, m in enumerate(value) if m is not None]
            elif value is not None:
                found.append((name, value))
        return found

    def sub_pipelines(self) -> list["DiffusionPipeline"]:
        """Pipelines this one hands work to (SDXL's refiner); they follow `to`, offload and tiling."""
        return []

    @property
    def denoiser(self) -> nn.Module:
        return getattr(self, self.denoiser_name)

    @property
    def device(self) -> torch.device:
        """Where a call computes: the offload execution device, else the denoiser's device."""
        if self._execution_device is not None:
            return self._execution_device
        return _device_of(self.denoiser)

    @property
    def dtype(self) -> torch.dtype:
        return _dtype_of(self.denoiser)

    @property
    def offload(self) -> str | None:
        """None, 'model' or 'sequential'."""
        return self._offload

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "DiffusionPipeline":
        """Move (and cast) every component; not possible once offload hooks manage the placement."""
        if self._offload is not None:
            raise UserError(f"this pipeline runs with {self._offload} CPU offload, which places the models itself: "
                            "call .to() before enabling offload, or load it again without offload")
        for _, module in self.named_components():
            module.to(device=device, dtype=dtype)
        for sub in self.sub_pipelines():
            sub.to(device, dtype)
        return self

    # -- memory and speed -------------------------------------------------------------------------

    def _vae_calls(self) -> MethodCalls:
        calls = self.__dict__.get("_vae_runner")
        if calls is None or calls.module is not self.vae:
            calls = self._vae_runner = MethodCalls(self.vae)
        return calls

    def _offload_targets(self) -> list[tuple[str, nn.Module]]:
        return [(name, self._vae_calls() if name == "vae" else m) for name, m in self.named_components()]

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> "DiffusionPipeline":
        """Keep every model on the CPU and move each to `device` only while it runs (accelerate hooks):
        the peak memory is the largest model instead of all of them."""
        dev = resolve_device(device)
        self._check_not_offloaded()
        self._hooks = tuple(model_offload([m for _, m in self._offload_targets()], dev))
        self._execution_device, self._offload = dev, "model"
        for sub in self.sub_pipelines():
            sub.enable_model_cpu_offload(dev)
        return self

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> "DiffusionPipeline":
        """Stream each layer's weights to `device` as it runs (accelerate `cpu_offload`): a few GB of GPU
        memory, much slower. The VAE moves whole."""
        dev = resolve_device(device)
        self._check_not_offloaded()
        targets = self._offload_targets()
        self._hooks = tuple(sequential_offload([m for n, m in targets if n != "vae"],
                                               [m for n, m in targets if n == "vae"], dev))
        self._execution_device, self._offload = dev, "sequential"
        for sub in self.sub_pipelines():
            sub.enable_sequential_cpu_offload(dev)
        return self

    def _check_not_offloaded(self) -> None:
        if self._offload is not None:
            raise UserError(f"{self._offload} CPU offload is already on: load the pipeline again to change it")

    def release_offloaded(self) -> None:
        """Send the models that model offload left on the execution device back to the CPU."""
        if self._offload == "model":
            for hook in self._hooks:
                hook.offload()

    def enable_vae_tiling(self, tile_latent: int = 64, overlap_latent: int = 16) -> "DiffusionPipeline":
        """Decode (and encode) large images in overlapping tiles (sizes in latent pixels)."""
        vae = getattr(self, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise UserError(f"{type(self).__name__} has no VAE that decodes in tiles")
        vae.enable_tiling(tile_latent, overlap_latent)
        for sub in self.sub_pipelines():
            sub.enable_vae_tiling(tile_latent, overlap_latent)
        return self

    def compile(self, **kwargs: Any) -> "DiffusionPipeline":
        """torch.compile the denoiser in place (its blocks, where it offers `compile_blocks`); state-dict
        keys are unchanged and the first call pays the compilation."""
        model = self.denoiser
        if hasattr(model, "compile_blocks"):
            model.compile_blocks(**kwargs)
        else:
            model.compile(**kwargs)
        for sub in self.sub_pipelines():
            sub.compile(**kwargs)
        return self

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def resolve(cls, source: Any, preset: str | None, device: str | torch.device | None,
                dtype: str | torch.dtype | None, offload: str | None = None) -> Placement:
        """The head of `from_pretrained`: an unknown preset fails with the close matches; without a
        source the preset defaults to the spec's (with one, None lets the weights tell); `device` None
        picks CUDA when there is one; `dtype` None is `cuda_dtype` on CUDA and float32 on the CPU."""
        if preset is not None or source is None:
            preset = cls.spec.check_preset(preset)
        if offload is not None and offload not in OFFLOAD_MODES:
            raise UserError(f"offload must be 'model' or 'sequential', got '{offload}'")
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=cls.cuda_dtype)
        return Placement(preset, dev, dt, dev if offload is None else torch.device("cpu"))

    def configure(self, device: torch.device, dtype: torch.dtype | None = None, *, offload: str | None = None,
                  vae_tiling: bool = False, compile: bool = False, attention: str | None = None) -> "DiffusionPipeline":
        """The tail of `from_pretrained`: place the models on `device` (or offload them to it), then
        tiling, compilation and the attention backend."""
        from utils.nn.attention import check_attention_backend

        if offload is not None and offload not in OFFLOAD_MODES:
            raise UserError(f"offload must be 'model' or 'sequential', got '{offload}'")
        self.to(device if offload is None else "cpu", dtype)
        if offload == "model":
            self.enable_model_cpu_offload(device)
        elif offload == "sequential":
            self.enable_sequential_cpu_offload(device)
        if vae_tiling:
            self.enable_vae_tiling()
        if compile:
            self.compile()
        self.attention = None if attention is None else check_attention_backend(attention)
        return self

    # -- LoRA (utils/diffusion/lora; each package maps its names in its lora.py) --------------------

    def lora_components(self) -> list:
        """The models LoRA files can adapt, with how their module names map (`LoraComponent`s)."""
        raise UserError(f"{type(self).__name__} does not take LoRA files")

    def load_lora(self, source: Any, scale: float = 1.0, name: str | None = None) -> str:
        """Add a LoRA file (diffusers/peft, kohya/A1111, BFL, XLabs, ai-toolkit; a path, a folder holding one,
        a hub id or 'repo:file.safetensors') as a new adapter at `scale`; call again to stack several.
        Returns the adapter's name (for `set_lora_scale`, `unload_lora`)."""
        from utils.diffusion.lora.loader import load_lora

        return load_lora(self, source, scale, name)

    def set_lora_scale(self, name: str, scale: float) -> None:
        """Change the scale of a loaded adapter."""
        from utils.diffusion.lora.loader import set_lora_scale

        set_lora_scale(self, name, scale)

    def fuse_lora(self) -> "DiffusionPipeline":
        """Add the loaded adapters, at their scales, into the base weights (no per-call LoRA cost)."""
        from utils.diffusion.lora.loader import fuse_lora

        fuse_lora(self)
        return self

    def unfuse_lora(self) -> "DiffusionPipeline":
        """Subtract the fused adapters from the base weights again (they stay loaded)."""
        from utils.diffusion.lora.loader import unfuse_lora

        unfuse_lora(self)
        return self

    def unload_lora(self, name: str | None = None) -> "DiffusionPipeline":
        """Remove one adapter, or all of them."""
        from utils.diffusion.lora.loader import unload_lora

        unload_lora(self, name)
        return self

    @property
    def loras(self) -> dict[str, float]:
        """The loaded adapters and their scales, in load order."""
        state = self.__dict__.get("_lora_state")
        return dict(state.scales) if state is not None else {}

    # -- pieces of a call -------------------------------------------------------------------------

    def default(self, key: str, value: Any = None) -> Any:
        """`value` when given, else this preset's default for `key` in the package's spec."""
        if value is not None:
            return value
        found = self.spec.default(self.preset, key)
        if found is None:
            raise KeyError(f"{self.spec.name} preset '{self.preset}' has no default for '{key}' in its spec.py")
        return found

    def generators(self, seed: int | Sequence[int] | None, batch: int, generator: Generators = None) -> Generators:
        """The generators of one call: `generator` when given (one for the whole batch, or a list with one
        per image), else one per image from `seed`: image i uses seed + i (a list: one seed per image)."""
        if generator is None:
            return noise.generators(seed, batch)
        if isinstance(generator, (list, tuple)) and len(generator) != batch:
            raise UserError(f"got {len(generator)} generators for {batch} images: give one, or one per image")
        return generator

    @contextmanager
    def session(self) -> Iterator[None]:
        """The context of one call: inference mode, the pipeline's attention backend, and the models that
        model offload moved to the device sent back at the end."""
        from utils.nn import attention_backend

        backend = attention_backend(self.attention) if self.attention is not None else nullcontext()
        try:
            with torch.inference_mode(), backend:
                yield
        finally:
            self.release_offloaded()

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> decoded pixels in [-1, 1] (the VAE runs where offload puts it)."""
        return self._vae_calls()("decode_latents", latents.to(self.device, _dtype_of(self.vae)))

    def encode_latents(self, pixels: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """Pixels in [-1, 1] -> normalised latents (float32), the posterior sampled in float32: with a
        list of generators, image i's sample is drawn from generator i (a single input image serves
        every generator); with one generator, the whole batch is drawn from it."""
        from utils.encoders.vae import DiagonalGaussian

        calls = self._vae_calls()
        x = pixels.to(self.device, _dtype_of(self.vae))
        if isinstance(generator, (list, tuple)):
            if x.shape[0] not in (1, len(generator)):
                raise UserError(f"got {x.shape[0]} input images for {len(generator)} outputs: give one image "
                                "or one per output")
            moments = ([calls("encode", x).moments] * len(generator) if x.shape[0] == 1 else
                       [calls("encode", x[i:i + 1]).moments for i in range(x.shape[0])])
            z = torch.cat([DiagonalGaussian(m.float()).sample(g) for m, g in zip(moments, generator)])
        else:
            z = DiagonalGaussian(calls("encode", x).moments.float()).sample(generator)
        return self.vae.scale_latents(z)

    def output(self, pixels: torch.Tensor | None, latents: torch.Tensor) -> ImageOutput:
        """Decoded pixels in [-1, 1] -> an ImageOutput (PIL images, `pixels` in [0, 1], `latents`); None
        (latent output) gives the latents only."""
        if pixels is None:
            return ImageOutput(images=[], latents=latents)
        return ImageOutput.from_tensor(pixels, latents=latents)


__all__ = ["DiffusionPipeline", "OFFLOAD_MODES", "Placement"]
