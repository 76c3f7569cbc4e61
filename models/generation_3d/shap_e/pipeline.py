"""Shap-E text- and image-to-3D: CLIP conditioning -> latent prior (Karras-Heun sampling with
classifier-free guidance) -> implicit function -> renders and a textured mesh.

    pipe = ShapEPipeline.from_pretrained(preset="text300M")           # or "image300M", "tiny"
    out = pipe(prompt="a red chair", guidance_scale=15.0, steps=64, seed=0)
    out.save("chair.glb")                                             # .ply .obj .glb .npz .gif .mp4
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from models.generation_3d.shap_e import convert as cv
from models.generation_3d.shap_e.config import ShapEConfig, get_config
from models.generation_3d.shap_e.model import ShapEDecoder, ShapEPrior
from models.generation_3d.shap_e.render import extract_mesh, pan_cameras, render_views
from models.generation_3d.shap_e.spec import SPEC
from utils.diffusion.noise import initial_noise
from utils.diffusion.schedulers import Heun
from utils.errors import UserError
from utils.outputs import Output3D

# The released sampler: Heun on Karras sigmas of the exp(-12 t) schedule, predicting the clean latent.
SCHEDULER = Heun(num_train_timesteps=1024, beta_schedule="exp", prediction_type="sample", use_karras_sigmas=True,
                 clip_sample=True, clip_sample_range=1.0)

VIT_L_14 = dict(hidden_size=1024, intermediate_size=4096, num_layers=24, num_heads=16, image_size=224, patch_size=14,
                projection_dim=768, hidden_act="quick_gelu")


def _vision_config(name: str):
    from utils.encoders.clip_vision import CLIPVisionConfig

    return CLIPVisionConfig(**VIT_L_14) if name == "vit-l-14" else CLIPVisionConfig.preset("tiny")


def _bar(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def _random_state(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Fixed random weights (tiny presets): N(0, 0.3) for every tensor, the same on every load."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return module


class ShapEPipeline:
    """The prior, the decoder and the CLIP encoder of one preset (text or image conditioned)."""

    def __init__(self, prior: ShapEPrior, decoder: ShapEDecoder, encoder: Any, config: ShapEConfig,
                 preset: str = "tiny"):
        self.prior, self.decoder, self.encoder = prior.eval(), decoder.eval(), encoder.eval()
        self.config, self.preset = config, preset
        self.scheduler = SCHEDULER

    @property
    def device(self) -> torch.device:
        return self.prior.input_proj.weight.device

    @property
    def cond(self) -> str:
        return self.config.prior.cond

    def to(self, device=None, dtype=None) -> "ShapEPipeline":
        for m in (self.prior, self.decoder, self.encoder):
            m.to(device=device, dtype=dtype)
        return self

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
                        ) -> "ShapEPipeline":
        """`source`: a diffusers folder or hub id (openai/shap-e, openai/shap-e-img2img); none: the
        preset's released weights, or fixed random weights for 'tiny' / 'tiny-image'."""
        from utils.torch_utils import resolve_device, resolve_dtype

        preset = SPEC.check_preset(preset)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev) if dtype is not None else torch.float32
        cfg = get_config(preset)
        if source is None and preset.startswith("tiny"):
            return cls.random(preset).to(dev, dt)
        if source is None:
            weights = SPEC.weights_for(preset)
            source = weights.source
        folder = Path(os.path.expanduser(str(source)))
        if folder.is_dir() and (folder / "transmitter.pt").is_file():
            return cls.from_official(folder, preset, dev, dt)
        return cls.from_diffusers(source, preset, dev, dt, cfg)

    @classmethod
    def from_official(cls, folder: str | os.PathLike, preset: str, device=None, dtype=torch.float32,
                      encoder: Any = None) -> "ShapEPipeline":
        """OpenAI's release files in `folder`: text_cond.pt (text300M) or image_cond.pt (image300M) and
        transmitter.pt; the CLIP ViT-L/14 encoder from `encoder` (a module) or the hub
        (openai/clip-vit-large-patch14)."""
        from utils.weights import load_into, load_state_dict

        folder = Path(os.path.expanduser(str(folder)))
        cfg = get_config(preset)
        name = "image_cond.pt" if cfg.prior.cond == "image" else "text_cond.pt"
        for f in (name, "transmitter.pt"):
            if not (folder / f).is_file():
                raise UserError(f"{folder} lacks {f}: the {preset} preset reads OpenAI's {name} and transmitter.pt")
        prior_sd = cv.prior_to_native(load_state_dict(folder / name, dtype=dtype))
        prior_cfg = cv.prior_config_from_state(prior_sd, cfg.prior, cfg.prior.heads)
        dec_sd = cv.decoder_to_native(load_state_dict(folder / "transmitter.pt", dtype=dtype))
        dec_cfg = cv.decoder_config_from_state(dec_sd, cfg.decoder)
        cfg = cfg.with_(prior=prior_cfg, decoder=dec_cfg)
        prior = load_into(ShapEPrior(prior_cfg), prior_sd, what=f"Shap-E {name}")
        decoder = load_into(ShapEDecoder(dec_cfg), dec_sd, what="Shap-E transmitter (decoder)")
        if encoder is None:
            if prior_cfg.cond == "text":
                from transformers import CLIPTokenizer

                from utils.encoders.clip import CLIPTextEncoder

                encoder = CLIPTextEncoder.from_pretrained("openai/clip-vit-large-patch14", with_projection=True,
                                                          tokenizer=False, device="cpu", dtype=dtype)
                encoder.tokenizer = CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14")
            else:
                from transformers import CLIPVisionModel

                encoder = CLIPVisionModel.from_pretrained("openai/clip-vit-large-patch14", torch_dtype=dtype)
        return cls(prior, decoder, encoder, cfg, preset).to(device, dtype)

    @classmethod
    def random(cls, preset: str = "tiny") -> "ShapEPipeline":
        """Fixed random weights at `preset` (the tiny ones run offline, with a stand-in tokenizer)."""
        cfg = get_config(preset)
        prior = _random_state(ShapEPrior(cfg.prior), 0)
        decoder = _random_state(ShapEDecoder(cfg.decoder), 1)
        with torch.no_grad():  # a density offset, so that the random object is visible in the renders
            decoder.nerstf.mlp[-1].bias[1:3] = 1.0
        if cfg.prior.cond == "text":
            from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
            from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer

            ecfg = CLIPTextEncoderConfig.preset("tiny" if preset.startswith("tiny") else cfg.encoder)
            ecfg = ecfg.with_(with_projection=True, projection_dim=cfg.prior.cond_dim)
            torch.manual_seed(2)
            encoder = CLIPTextEncoder(ecfg, tokenizer=tiny_clip_tokenizer(ecfg) if preset.startswith("tiny") else None)
        else:
            from transformers import CLIPVisionModel

            torch.manual_seed(2)
            encoder = CLIPVisionModel(_vision_config(cfg.encoder).to_transformers())
        return cls(prior, decoder, encoder, cfg, preset)

    @classmethod
    def from_diffusers(cls, source: str | os.PathLike, preset: str, device, dtype, cfg: ShapEConfig) -> "ShapEPipeline":
        """A diffusers ShapEPipeline / ShapEImg2ImgPipeline folder (prior/, shap_e_renderer/, and
        text_encoder/ + tokenizer/ or image_encoder/)."""
        from utils.encoders.text import read_config
        from utils.weights import load_folder_state_dict, load_into, resolve

        root = Path(os.path.expanduser(str(source)))
        if not root.exists():
            root = resolve(str(source), allow_patterns=["prior/*", "shap_e_renderer/*", "text_encoder/*", "tokenizer/*",
                                                         "image_encoder/*", "image_processor/*"])
        if not (root / "prior").is_dir() or not (root / "shap_e_renderer").is_dir():
            raise UserError(f"{root} is not a diffusers Shap-E folder: it needs prior/ and shap_e_renderer/")
        pcfg = read_config(root / "prior")
        heads = int(pcfg.get("num_attention_heads", 16))
        prior_sd = cv.prior_to_native(load_folder_state_dict(root / "prior", dtype=dtype), heads)
        prior_cfg = cv.prior_config_from_state(prior_sd, cfg.prior, heads)
        dec_sd = cv.decoder_to_native(load_folder_state_dict(root / "shap_e_renderer", dtype=dtype))
        dec_cfg = cv.decoder_config_from_state(dec_sd, cfg.decoder)
        cfg = cfg.with_(prior=prior_cfg, decoder=dec_cfg)
        prior = load_into(ShapEPrior(prior_cfg), prior_sd, what="Shap-E prior")
        decoder = load_into(ShapEDecoder(dec_cfg), dec_sd, what="Shap-E decoder")
        if prior_cfg.cond == "text":
            from utils.encoders.clip import CLIPTextEncoder

            encoder = CLIPTextEncoder.from_pretrained(root, subfolder="text_encoder", with_projection=True,
                                                      device="cpu", dtype=dtype)
        else:
            from transformers import CLIPVisionModel

            encoder = CLIPVisionModel.from_pretrained(str(root / "image_encoder"), torch_dtype=dtype)
        return cls(prior, decoder, encoder, cfg, preset).to(device, dtype)

    # -- conditioning -------------------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-norm CLIP text embeddings (B, cond_dim)."""
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise UserError("the prompt is empty: describe the object, e.g. --prompt \"a red chair\"")
        out = self.encoder(self.encoder.tokenize(list(prompts))["input_ids"])
        emb = out.text_embeds.float()
        return emb / emb.norm(dim=-1, keepdim=True)

    def preprocess_image(self, image: Any) -> torch.Tensor:
        """A PIL image, a path, or a (3, H, W) / (B, 3, H, W) tensor in [0, 1] -> CLIP pixel values
        (`utils.encoders.clip_preprocess.clip_pixels`)."""
        from utils.encoders.clip_preprocess import clip_pixels

        return clip_pixels(image, self.encoder.config.image_size)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP's patch features (B, patches, width): the last layer before the final norm, class token dropped."""
        p = next(self.encoder.parameters())
        hidden = self.encoder(pixel_values=pixel_values.to(p.device, p.dtype)).last_hidden_state
        return hidden[:, 1:].float()

    # -- sampling -----------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_latents(self, cond: torch.Tensor, steps: int, guidance_scale: float,
                       seed: int | Sequence[int] | None = None, generator=None, progress: bool = False) -> torch.Tensor:
        """Conditioning (B, ...) -> latents (B, n_ctx, channels)."""
        pcfg = self.config.prior
        batch = cond.shape[0]
        schedule = self.scheduler.schedule(steps)
        dtype = self.prior.input_proj.weight.dtype
        noise = initial_noise((batch, pcfg.n_ctx * pcfg.channels), generator if generator is not None else seed,
                              self.device, torch.float32, init_sigma=schedule.init_noise_sigma)
        x = noise.reshape(batch, pcfg.n_ctx, pcfg.channels)
        guided = guidance_scale > 1.0
        c = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
        c = c.to(self.device, dtype)
        state = None
        for i in _bar(range(len(schedule)), "Shap-E prior", progress):
            inp = torch.cat([x, x]) if guided else x
            scaled = self.scheduler.scale_model_input(inp, i, schedule)
            t = schedule.timesteps[i].to(self.device)
            out = self.prior(scaled.to(dtype), t, c).float()[..., :pcfg.channels]
            if guided:
                uncond, cnd = out.chunk(2)
                out = uncond + guidance_scale * (cnd - uncond)
            step = self.scheduler.step(out, x, i, schedule, state=state)
            x, state = step.prev_sample, step.state
        return x

    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str] | None = None, image: Any = None, num_images: int = 1,
                 steps: int | None = None, guidance_scale: float | None = None, seed: int | Sequence[int] | None = None,
                 frame_size: int | None = None, n_views: int | None = None, mesh: bool = True,
                 mesh_resolution: int | None = None, latents: torch.Tensor | None = None, progress: bool = False,
                 generator=None) -> Output3D:
        """Generate `num_images` objects per prompt (or image). Object i of a call uses seed + i.

        Returns an Output3D: `renders` (n_views turntable frames per object, object after object),
        `points`/`colors` (the mesh vertices and their colours), `latents`, and writers for
        .ply / .obj / .glb (meshes, several objects side by side along x) and .npz (latents + meshes).
        """
        d = lambda key, v: v if v is not None else SPEC.default(self.preset, key)  # noqa: E731
        steps, guidance_scale = int(d("steps", steps)), float(d("guidance_scale", guidance_scale))
        frame_size, n_views = int(d("frame_size", frame_size)), int(d("n_views", n_views))
        mesh_resolution = int(d("mesh_resolution", mesh_resolution))
        if num_images < 1:
            raise UserError(f"num_images must be at least 1, got {num_images}")
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        if frame_size < 2 or n_views < 1 or mesh_resolution < 2:
            raise UserError("frame_size and mesh_resolution must be at least 2 and n_views at least 1")
        if latents is None:
            cond = self._condition(prompt, image, num_images)
            latents = self.sample_latents(cond, steps, guidance_scale, seed, generator, progress)
        return self.decode(latents, frame_size, n_views, mesh, mesh_resolution, progress)

    def _condition(self, prompt, image, num_images: int) -> torch.Tensor:
        if self.cond == "text":
            if image is not None:
                raise UserError(f"shap_e preset '{self.preset}' is text-conditioned: give a prompt, or use the "
                                "image300M preset for --image")
            if prompt is None:
                raise UserError("give a prompt, e.g. prompt=\"a red chair\"")
            prompts = [prompt] if isinstance(prompt, str) else list(prompt)
            emb = self.encode_prompt(prompts)
        else:
            if prompt is not None and image is None:
                raise UserError(f"shap_e preset '{self.preset}' is image-conditioned: give an image, or use the "
                                "text300M preset for a prompt")
            if image is None:
                raise UserError("give an image of the object (image=... / --image photo.png)")
            images = image if isinstance(image, (list, tuple)) else [image]
            emb = torch.cat([self.encode_image(self.preprocess_image(im)) for im in images])
        return emb.repeat_interleave(num_images, dim=0)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, frame_size: int = 64, n_views: int = 20, mesh: bool = True,
               mesh_resolution: int = 128, progress: bool = False) -> Output3D:
        """Latents (B, n_ctx, channels) -> renders and meshes."""
        latents = latents.to(self.device)
        renders: list[Image.Image] = []
        meshes = []
        for b in _bar(range(latents.shape[0]), "Shap-E decode", progress and latents.shape[0] > 1):
            lat = latents[b:b + 1]
            views = render_views(self.decoder, lat, frame_size, n_views)
            from utils.outputs import check_generated

            check_generated(views, "renders", flat=False)
            renders += [Image.fromarray((v.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)) for v in views]
            if mesh:
                bar = (lambda it: _bar(it, "marching cubes", True)) if progress else None
                meshes.append(extract_mesh(self.decoder, lat, mesh_resolution, progress=bar))
        return _output(renders, meshes, latents.detach().cpu(), pan_cameras(frame_size, n_views))


def _combined(meshes: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several meshes in one: object i shifted by 2.2 i along x (the box is 2 wide)."""
    verts, faces, colours, offset = [], [], [], 0
    for i, (v, f, c) in enumerate(meshes):
        verts.append(v + np.array([2.2 * i, 0.0, 0.0], np.float32))
        faces.append(f + offset)
        colours.append(c)
        offset += len(v)
    return (np.concatenate(verts).astype(np.float32), np.concatenate(faces).astype(np.int64),
            np.concatenate(colours).astype(np.float32))


def _output(renders: list, meshes: list, latents: torch.Tensor, cameras) -> Output3D:
    from utils.visualization.mesh_files import mesh_writers

    writers: dict = {}
    points = colors = None
    if meshes:
        verts, faces, colours = _combined(meshes)
        points, colors = verts, colours
        writers = mesh_writers(verts, faces, colours)
    arrays = {"latents": latents.numpy()}
    if meshes:
        arrays.update(vertices=points, faces=_combined(meshes)[1], vertex_colors=colors)

    def write_npz(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    writers[".npz"] = write_npz
    out = Output3D(renders=renders, points=points, colors=colors, writers=writers, fps=10.0, cameras=cameras)
    return out
