"""StyleGANPipeline: seeds (or latents), class labels, truncation and an output transform -> images.

    from models.gan.stylegan3 import StyleGANPipeline
    pipe = StyleGANPipeline.from_pretrained(preset="stylegan3-t-ffhq-1024")   # NVlabs' .pkl, read as data
    out = pipe(num_images=4, seed=0, truncation=0.7, translate=(0.1, 0), rotate=10)
    grid = pipe.style_mixing(row_seeds=[1, 2, 3], col_seeds=[4, 5, 6], styles=range(0, 6))
    video = pipe.interpolation_video(seeds=[0, 1, 2], frames_per_seed=30, space="w")

Weights: an NVlabs .pkl (a file, or the preset's NGC URL, downloaded once into the torch hub cache),
rosinality's stylegan2-pytorch .pt, or a native .safetensors (what train_gan.py exports). A .pkl is
never unpickled with its code: `utils.weights.nvlabs` reads its tensors and constructor arguments.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from models.gan.pipeline_base import LatentGANPipeline
from models.gan.stylegan3.config import PRESETS, SMALL, StyleGANConfig
from models.gan.stylegan3.convert import (config_from_nvlabs, convert_nvlabs, convert_rosinality, detect_format,
                                          nvlabs_architecture)
from models.gan.stylegan3.model import StyleGANGenerator
from utils.errors import UserError, WeightsError
from utils.outputs import ImageOutput, VideoOutput

Tensor = torch.Tensor

__all__ = ["StyleGANPipeline", "user_transform", "parse_styles"]


def user_transform(translate: Sequence[float] = (0.0, 0.0), rotate: float = 0.0) -> Tensor:
    """The 3x3 input transform that rotates the output by `rotate` degrees, then moves it by `translate`
    (in image widths/heights, +x right, +y down): the inverse of that similarity, as StyleGAN3's input takes it."""
    tx, ty = (float(v) for v in translate)
    a = math.radians(float(rotate))
    m = torch.tensor([[math.cos(a), math.sin(a), tx], [-math.sin(a), math.cos(a), ty], [0.0, 0.0, 1.0]],
                     dtype=torch.float64)
    return torch.linalg.inv(m).to(torch.float32)


def parse_styles(styles: str | Iterable[int], num_ws: int) -> list[int]:
    """'0-6' / '0,2,4-5' / an iterable -> sorted style indices, each in [0, num_ws)."""
    if isinstance(styles, str):
        out: list[int] = []
        for part in styles.split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            if not lo.strip().isdigit() or (hi and not hi.strip().isdigit()):
                raise UserError(f"styles '{styles}' is not a list of indices or ranges such as '0-6' or '0,2,4-5'")
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    else:
        out = [int(s) for s in styles]
    bad = [s for s in out if not 0 <= s < num_ws]
    if bad or not out:
        raise UserError(f"style indices must lie in 0..{num_ws - 1} (this network takes {num_ws} styles), got "
                        f"{bad or 'none'}")
    return sorted(set(out))


class StyleGANPipeline(LatentGANPipeline):
    """A StyleGAN3-T/-R or StyleGAN2 generator ready to sample; `__call__` returns an `ImageOutput`."""

    model_name = "stylegan3"
    config_class = StyleGANConfig
    presets = PRESETS
    network_class = StyleGANGenerator
    weights_files = ("generator.safetensors", "network.pkl", "network-snapshot.pkl", "g_ema.pt")
    config: StyleGANConfig

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None,
                        device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> "StyleGANPipeline":
        """Random weights for the small presets (tiny, tiny-r, tiny-stylegan2); else the given source or the
        preset's NGC release."""
        if source is None and preset in SMALL:
            from utils.torch_utils import resolve_device, resolve_dtype

            dev = resolve_device(device)
            return cls.random(preset, dev, resolve_dtype(dtype, dev))
        return super().from_pretrained(source, preset, device, dtype)

    @staticmethod
    def resolve_source(source: str | Path) -> Path:
        """A URL (the NGC release) is downloaded once into the torch hub cache; anything else as the base does."""
        text = str(source)
        if text.startswith(("http://", "https://")):
            from utils.weights.hub import fetch_url

            target = Path(torch.hub.get_dir()) / "checkpoints" / text.rsplit("/", 1)[-1]
            return fetch_url(text, target, f"StyleGAN weights {target.name}", instead="or pass --weights with the file")
        return LatentGANPipeline.resolve_source(source)

    @classmethod
    def read_checkpoint(cls, path: Path, preset: str | None) -> tuple[Path, dict[str, Tensor], StyleGANConfig]:
        file = cls.checkpoint_file(path)
        if file.suffix.lower() in (".pkl", ".pickle"):
            from utils.weights.nvlabs import load_nvlabs_pickle, nvlabs_network

            snapshot = load_nvlabs_pickle(file)
            _, G = nvlabs_network(snapshot, file)
            D = snapshot.get("D") if isinstance(snapshot, dict) else None
            arch = nvlabs_architecture(G.children, G.init_kwargs)
            config = config_from_nvlabs(G.init_kwargs, arch, what=f"the generator in {file.name}",
                                        discriminator=getattr(D, "init_kwargs", None))
            cls.check_fit(config, preset, file)
            return file, G.state_dict(), config
        if file.suffix.lower() in (".pt", ".pth", ".ckpt"):
            sd = cls.read_torch_file(file)
            if detect_format(sd) == "rosinality":
                native, config = convert_rosinality(sd)
                cls.check_fit(config, preset, file)
                return file, native, config
        return super().read_checkpoint(path, preset)

    @staticmethod
    def read_torch_file(file: Path) -> dict[str, Any]:
        """A .pt's dict of tensors; rosinality's training checkpoints pickle their argparse options too, which a
        weights-only load refuses: those are read by the restricted unpickler, the options left inert."""
        from utils.weights import load_state_dict, load_torch_zip_restricted

        try:
            return load_state_dict(file, unwrap=False)
        except WeightsError as err:
            if "safe load refuses" not in str(err):
                raise
            obj = load_torch_zip_restricted(file)
            if not isinstance(obj, dict):
                raise
            return {k: v for k, v in obj.items() if isinstance(v, (dict, torch.Tensor))}

    @classmethod
    def read_state_dict(cls, file: Path) -> dict[str, Tensor]:
        sd = cls.read_torch_file(file) if file.suffix.lower() != ".safetensors" else super().read_state_dict(file)
        from utils.weights import flatten_tensors

        if "g_ema" in sd or "G_ema" in sd:  # a training checkpoint: its EMA generator
            sd = sd.get("g_ema", sd.get("G_ema"))
        return flatten_tensors(sd) if not all(isinstance(v, Tensor) for v in sd.values()) else dict(sd)

    @classmethod
    def infer_config(cls, state_dict: dict[str, Tensor], **options: Any) -> StyleGANConfig | None:
        return None  # native files carry their config; NVlabs and rosinality files are read above

    @classmethod
    def check_fit(cls, config: StyleGANConfig, preset: str | None, file: Path) -> None:
        """A checkpoint named with a preset must be that network (config and resolution); its other numbers
        come from the file."""
        if preset is None or preset.startswith("tiny"):
            return
        want = PRESETS[preset]
        if (config.architecture, config.image_size) != (want.architecture, want.image_size):
            raise UserError(f"{file.name} holds a {config.architecture} network at {config.image_size}px, not preset "
                            f"'{preset}' ({want.architecture} at {want.image_size}px): drop --preset to use the "
                            "checkpoint's own configuration")

    @classmethod
    def convert(cls, state_dict: dict[str, Tensor], config: StyleGANConfig, **options: Any) -> dict[str, Tensor]:
        return convert_nvlabs(state_dict, config, what="StyleGAN generator checkpoint")

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        return UserError(f"no weights are registered for stylegan3 preset '{preset}': pass --weights with an NVlabs "
                         ".pkl, a rosinality .pt or a native .safetensors, or use --preset tiny for random weights")

    # -- the network's own steps --------------------------------------------------------------------

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    def check_transform(self, translate: Sequence[float] | None, rotate: float | None) -> Tensor | None:
        if translate is None and not rotate:
            return None
        translate = (0.0, 0.0) if translate is None else translate
        if len(tuple(translate)) != 2:
            raise UserError(f"translate is (x, y) in image widths and heights, got {translate!r}")
        if rotate and not self.config.is_stylegan3:
            raise UserError("StyleGAN2 has a constant input, which cannot be rotated: --rotate needs a StyleGAN3 network "
                            "(translations work for both)")
        return user_transform(translate, rotate or 0.0).to(self.device)

    def check_truncation(self, truncation: float, cutoff: int | None) -> None:
        if not 0.0 <= float(truncation) <= 2.0:
            raise UserError(f"truncation (psi) must be in [0, 2], got {truncation}: 1 is none, 0.7 is the usual value")
        if cutoff is not None and not 1 <= int(cutoff) <= self.num_ws:
            raise UserError(f"truncation cutoff must lie in 1..{self.num_ws} (the number of styles), got {cutoff}")

    @torch.no_grad()
    def map(self, z: Tensor, labels: Tensor | None = None, truncation: float = 1.0,
            truncation_cutoff: int | None = None) -> Tensor:
        """z (B, z_dim) [+ labels] -> ws (B, num_ws, w_dim) on the CPU, in float32."""
        if z.ndim != 2 or z.shape[1] != self.config.z_dim:
            raise UserError(f"latents must have shape (batch, {self.config.z_dim}), got {tuple(z.shape)}")
        y = None if labels is None else labels.to(self.device)
        ws = self.generator.map(z.to(self.device, torch.float32), y, truncation, truncation_cutoff)
        return ws.float().cpu()

    def check_ws(self, ws: Tensor) -> Tensor:
        if ws.ndim == 2 and ws.shape[1] == self.config.w_dim:
            ws = ws[:, None].repeat(1, self.num_ws, 1)  # one w for every style (W), as projections in W give
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.config.w_dim):
            raise UserError(f"ws must have shape (batch, {self.num_ws}, {self.config.w_dim}) (W+) or (batch, "
                            f"{self.config.w_dim}) (W), got {tuple(ws.shape)}")
        return ws

    @torch.no_grad()
    def synthesize(self, ws: Tensor, noise_mode: str = "const", transform: Tensor | None = None,
                   batch_size: int = 8, noise_generator: torch.Generator | None = None) -> Tensor:
        """ws -> images (B, C, R, R) in [-1, 1]-ish, float32 on the CPU, in batches."""
        if noise_mode not in ("const", "random", "none"):
            raise UserError(f"noise_mode must be 'const', 'random' or 'none', got '{noise_mode}'")
        ws = self.check_ws(ws)
        chunks = []
        synthesis = getattr(self, "compiled_synthesis", None)
        if synthesis is None:  # (not `or`: truth-testing a compiled module asks for its len())
            synthesis = self.generator.synthesis
        for i in range(0, ws.shape[0], batch_size):
            w = ws[i:i + batch_size].to(self.device, self.dtype)
            chunks.append(synthesis(w, noise_mode=noise_mode, transform=transform,
                                    noise_generator=noise_generator).float().cpu())
        return torch.cat(chunks)

    # -- generation --------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, num_images: int = 4, seed: int | None = None, prompt: str | None = None,
                 labels: Sequence[int] | int | None = None, latents: Tensor | None = None, truncation: float = 1.0,
                 truncation_cutoff: int | None = None, noise_mode: str = "const",
                 translate: Sequence[float] | None = None, rotate: float | None = None, ws: Tensor | None = None,
                 batch_size: int = 8, height: int | None = None, width: int | None = None,
                 steps: int | None = None) -> ImageOutput:
        """Generate `num_images` images from `seed` (or `latents` z, or `ws` directly). `truncation` psi pulls w
        towards its mean (on the first `truncation_cutoff` styles); `translate` (x, y) and `rotate` (degrees) move
        the output through the input transform; `noise_mode` (StyleGAN2) const, random or none."""
        if steps is not None:
            raise UserError("StyleGAN generates in one forward pass: --steps does not apply")
        if num_images < 1:
            raise UserError("the number of images must be at least 1")
        self.check_size(height, width)
        self.check_truncation(truncation, truncation_cutoff)
        transform = self.check_transform(translate, rotate)
        gen = self.noise_generator(seed)
        y = None
        if ws is None:
            if latents is None:
                latents = self.sample_latents(num_images, gen)
            y = self.labels_from(prompt, labels, latents.shape[0], gen)
            ws = self.map(latents, y, truncation, truncation_cutoff)
        images = self.synthesize(ws, noise_mode, transform, batch_size, noise_generator=gen)
        return self.output(images, latents=latents, labels=y)

    def generate(self, latents: Tensor, labels: Tensor | None, batch_size: int, *args: Any) -> Tensor:
        """z [+ labels] -> images, for the metrics (FID, PPL) that drive latent GANs through this method."""
        return self.synthesize(self.map(latents, labels), batch_size=batch_size)

    def seed_latents(self, seeds: Sequence[int]) -> Tensor:
        """One z per seed, each drawn alone (as NVlabs' gen_images.py: seed s always gives the same face)."""
        return torch.cat([self.sample_latents(1, self.noise_generator(int(s))) for s in seeds])

    def style_mixing(self, row_seeds: Sequence[int], col_seeds: Sequence[int], styles: str | Iterable[int] = "0-6",
                     truncation: float = 1.0, noise_mode: str = "const", label: int | None = None,
                     batch_size: int = 8) -> ImageOutput:
        """NVlabs' style-mixing figure as one image: the column seeds across the top, the row seeds down the
        left, and in each cell the row's w with the column's w in the `styles` layers (coarse styles 0-3 take
        pose and face shape, fine ones colours)."""
        from utils.visualization.grid import make_grid, to_pil

        if not row_seeds or not col_seeds:
            raise UserError("style mixing needs at least one row seed and one column seed")
        self.check_truncation(truncation, None)
        idx = parse_styles(styles, self.num_ws)
        seeds = list(row_seeds) + list(col_seeds)
        z = self.seed_latents(seeds)
        y = None if not self.config.num_classes else torch.full((len(seeds),), 0 if label is None else int(label))
        ws = self.map(z, y, truncation)
        rows, cols = ws[:len(row_seeds)], ws[len(row_seeds):]
        mixed = rows[:, None].repeat(1, len(col_seeds), 1, 1)
        mixed[:, :, idx] = cols[None, :, idx]
        all_ws = torch.cat([cols, rows, mixed.flatten(0, 1)])
        images = self.synthesize(all_ws, noise_mode, batch_size=batch_size)
        col_img, row_img = images[:len(col_seeds)], images[len(col_seeds):len(col_seeds) + len(row_seeds)]
        cells = images[len(col_seeds) + len(row_seeds):].reshape(len(row_seeds), len(col_seeds), *images.shape[1:])
        blank = torch.full_like(images[0], -1.0)
        table = [blank, *col_img]
        for r in range(len(row_seeds)):
            table += [row_img[r], *cells[r]]
        grid = make_grid(to_pil(torch.stack(table)), nrow=len(col_seeds) + 1, padding=0)
        return ImageOutput([grid], names=[f"rows {list(row_seeds)} x cols {list(col_seeds)}, styles {idx}"])

    def interpolation_video(self, seeds: Sequence[int], frames_per_seed: int = 30, space: str = "w",
                            truncation: float = 1.0, loop: bool = True, fps: float = 30.0,
                            noise_mode: str = "const", batch_size: int = 8) -> VideoOutput:
        """A video through the seeds' latents: lerp between their w (space 'w'), or slerp between their z
        (space 'z'), `frames_per_seed` frames from each to the next (back to the first when `loop`)."""
        from models.gan.latents import lerp, slerp
        from utils.visualization.grid import to_pil

        if space not in ("w", "z"):
            raise UserError(f"interpolation space must be 'w' (lerp in W) or 'z' (slerp in Z), got '{space}'")
        if len(seeds) < 2 or frames_per_seed < 1:
            raise UserError("an interpolation video needs at least two seeds and one frame per seed")
        self.check_truncation(truncation, None)
        z = self.seed_latents(seeds)
        y = torch.zeros(len(seeds), dtype=torch.long) if self.config.num_classes else None
        keys = list(range(len(seeds))) + ([0] if loop else [])
        pairs = list(zip(keys, keys[1:]))
        t = torch.arange(frames_per_seed, dtype=torch.float32) / frames_per_seed
        if space == "w":
            w = self.map(z, y, truncation)
            path = torch.cat([lerp(w[a], w[b], t) for a, b in pairs] + ([] if loop else [w[-1:]]))
        else:
            zs = torch.cat([slerp(z[a], z[b], t) for a, b in pairs] + ([] if loop else [z[-1:]]))
            path = self.map(zs, None if y is None else torch.zeros(len(zs), dtype=torch.long), truncation)
        frames = self.synthesize(path, noise_mode, batch_size=batch_size)
        return VideoOutput([to_pil(frames)], fps=fps)

    # -- metrics -------------------------------------------------------------------------------------

    def equivariance_networks(self) -> dict[str, Any]:
        """What utils.metrics.equivariance needs: z -> ws, (ws, transform) -> images, a per-batch redraw of
        StyleGAN2's stored noise (on a copy of the network, as the release does), and which transforms apply."""
        import copy

        G = copy.deepcopy(self.generator).eval()
        noise = [b for n, b in G.synthesis.named_buffers() if n.endswith("noise_const")]
        dev, dt = self.device, self.dtype

        def redraw(gen: torch.Generator) -> None:
            for b in noise:
                b.copy_(torch.randn(b.shape, generator=gen).to(b))

        def labels(n: int) -> Tensor | None:
            return torch.zeros(n, dtype=torch.long, device=dev) if self.config.num_classes else None

        return {"mapping": lambda z: G.map(z.to(dev, torch.float32), labels(z.shape[0])),
                "synthesis": lambda ws, m: G.synthesize(ws.to(dev, dt), noise_mode="const", transform=m.to(dev)),
                "before_batch": redraw if noise else None, "z_dim": self.config.z_dim,
                "resolution": self.config.image_size, "rotations": self.config.is_stylegan3}

    # -- speed ----------------------------------------------------------------------------------------

    def compile(self, **kwargs: Any) -> "StyleGANPipeline":
        """torch.compile the synthesis network (CUDA or CPU with a compiler); outputs match the eager path to
        float tolerance (tests/models/gan/test_stylegan3.py)."""
        self.compiled_synthesis = torch.compile(self.generator.synthesis, **kwargs)
        return self

