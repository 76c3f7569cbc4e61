"""FID and KID, agreeing with pytorch-fid (the default conventions) and with clean-fid / torch-fidelity.

    from utils.metrics.fid import FeatureExtractor, fid, frechet_distance
    fid("real_images/", "ref_stats.npz")     # the command line is evaluate/fid_score.py

What is computed, exactly (the pytorch-fid convention):

1. every image is read as 8-bit RGB (grey images repeat their channel; tensors and generated
   images are quantised to uint8 the way saving them as PNG would), then scaled to [0, 1];
2. bilinear resize to 299 x 299 with `torch.nn.functional.interpolate(align_corners=False)`,
   no antialiasing, then scaling to [-1, 1] (`--resize tf` switches to TensorFlow 1.x bilinear,
   the torch-fidelity / original TF convention);
3. 2048-d features of the final average pool of the TF InceptionV3 (`utils/metrics/inception.py`,
   weights `pt_inception-2015-12-05-6726825d.pth`);
4. mean and covariance (`np.cov`, unbiased) in float64, and the Fréchet distance
   |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's `sqrtm`; when the product is
   singular, 1e-6 is added to both diagonals, and a negligible imaginary part is dropped;
5. KID: unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3, averaged over 100
   random subsets of min(1000, n) samples (seed 2020, the sampling order of torch-fidelity).

Statistics files are `.npz` with arrays `mu` and `sigma`, the format pytorch-fid and clean-fid
read and write.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import numpy as np
import torch

from utils.errors import UserError

__all__ = ["IMAGE_EXTENSIONS", "FeatureExtractor", "frechet_distance", "statistics", "save_stats", "load_stats",
           "kernel_inception_distance", "list_images", "fid", "quantize"]

IMAGE_EXTENSIONS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}

# A source of images: a folder, a list of PIL images or files, a tensor in [0, 1], a dataset,
# or a callable `fn(n) -> n images` (PIL list or tensor) that is called until enough are drawn.
Source = Union[str, os.PathLike, Sequence, torch.Tensor, Callable[[int], Any]]


# -- statistics and distances ----------------------------------------------------------------------

def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of (N, D) features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise UserError(f"FID needs at least 2 images, got {len(f)}: add images")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise UserError(f"the two statistics have different feature sizes ({mu1.shape[0]} vs {mu2.shape[0]}): "
                        "compare statistics computed with the same network and layer")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # A singular product (fewer samples than dimensions): nudge both diagonals.
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"the matrix square root has a large imaginary part "
                             f"({np.abs(covmean.imag).max():.3g}): the covariances are ill-conditioned; use more images")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2 with the kernel (x.y / d + 1)^3.

    Subsets are drawn without replacement, first from `features1` then `features2`, from
    `np.random.RandomState(seed)`, as torch-fidelity does, so equal settings give its numbers.
    The subset size is capped at the smaller set, as clean-fid does.
    """
    f1 = np.asarray(features1, np.float64)
    f2 = np.asarray(features2, np.float64)
    if f1.shape[1] != f2.shape[1]:
        raise UserError("KID: the two feature sets have different sizes")
    m = min(len(f1), len(f2), subset_size)
    if m < 2:
        raise UserError(f"KID needs at least 2 images per set, got {min(len(f1), len(f2))}")
    d = f1.shape[1]
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), m, replace=False)]
        y = f2[rng.choice(len(f2), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        # Unbiased: the within-set sums leave out the diagonal (each sample with itself).
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values[i] = within - 2 * kxy.sum() / (m * m)
    return float(values.mean()), float(values.std())


def save_stats(path: str | os.PathLike, mu: np.ndarray, sigma: np.ndarray) -> Path:
    """Write `mu`, `sigma` as a compressed .npz (readable by pytorch-fid and clean-fid)."""
    from utils.io import atomic_path

    path = Path(path)
    if path.suffix != ".npz":
        raise UserError(f"statistics are saved as .npz, got '{path.name}': use a name ending in .npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, mu=mu, sigma=sigma)
    return path


def load_stats(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """`mu`, `sigma` of a pytorch-fid / clean-fid / our .npz statistics file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"statistics file not found: {path}: check the path, or write it with --save-stats")
    try:
        with np.load(path) as f:
            return f["mu"].astype(np.float64), f["sigma"].astype(np.float64)
    except KeyError:
        raise UserError(f"{path.name} has no 'mu' and 'sigma' arrays: it is not an FID statistics file") from None
    except (ValueError, OSError) as err:
        raise UserError(f"{path.name} is not a readable .npz file ({err}): write it again with --save-stats") from None


# -- images -> features ------------------------------------------------------------------------------

def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (not recursive, as pytorch-fid)."""
    folder = Path(folder)
    if not folder.exists():
        raise UserError(f"folder not found: {folder}: check the path")
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder of images (nor a .npz statistics file): check the path")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise UserError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}): "
                        "check the folder")
    return files


def _read_uint8(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"cannot read image {path} ({type(err).__name__}): remove or replace the file") from None


def _pil_uint8(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def quantize(x: torch.Tensor, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Float images in `value_range` -> the [0, 1] floats of their 8-bit version (as a saved PNG).

    Rounds to nearest (torchvision's `save_image` / `to_pil_image(x.mul(255).add(0.5))` convention).
    """
    lo, hi = value_range
    x = (x.float() - lo) / (hi - lo)
    return torch.clamp(torch.floor(x * 255 + 0.5), 0, 255) / 255


class FeatureExtractor:
    """Inception pool features of any image source, in batches, with a progress bar.

    `model` defaults to `load_inception(weights)`; `value_range` says how tensors are scaled
    ((0, 1) by default; (-1, 1) for generator outputs and the zoo's datasets).
    """

    def __init__(self, model: torch.nn.Module | None = None, weights: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, batch_size: int = 50, num_workers: int | None = None,
                 progress: bool = True, resize: str = "pytorch-fid", download: bool | None = None,
                 dims: int = 2048):
        from utils.torch_utils import resolve_device

        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        if model is None:
            from utils.metrics.inception import load_inception

            model = load_inception(weights, device=self.device, resize=resize, download=download)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.num_workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
        self.progress = progress
        self.dims = dims

    @torch.inference_mode()
    def _run(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, non_blocking=True)
        out = self.model(x) if self.dims == 2048 else self.model(x, dims=self.dims)
        return out.double().cpu().numpy()

    def _batches_from_files(self, files: Sequence[Path]) -> Iterator[list[np.ndarray]]:
        # Decoding in threads overlaps reading with the network (PIL releases the GIL while decoding).
        with ThreadPoolExecutor(max(1, self.num_workers)) as pool:
            chunks = [files[i:i + self.batch_size] for i in range(0, len(files), self.batch_size)]
            pending = [pool.map(_read_uint8, c) for c in chunks[:2]]
            for k in range(len(chunks)):
                if k + 2 < len(chunks):
                    pending.append(pool.map(_read_uint8, chunks[k + 2]))
                yield list(pending[k])
                pending[k] = None

    def _features_uint8(self, arrays: list[np.ndarray]) -> np.ndarray:
        shapes = {a.shape for a in arrays}
        if len(shapes) == 1:
            x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
            return self._run(x)
        # Mixed sizes: each image is resized on its own (the same operation, one at a time).
        return np.concatenate([self._run(torch.from_numpy(a).permute(2, 0, 1)[None].float().div_(255))
                               for a in arrays])

    def _progress(self, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="img", disable=not self.progress, leave=False)

    def features(self, source: Source, num_samples: int | None = None, value_range: tuple[float, float] = (0.0, 1.0),
                 desc: str = "Inception features") -> np.ndarray:
        """(N, 2048) float64 features of `source` (see `Source`); `num_samples` is required for callables."""

        out: list[np.ndarray] = []
        if isinstance(source, (str, os.PathLike)):
            files = list_images(source)
            if num_samples is not None:
                files = files[:num_samples]
            with self._progress(len(files), desc) as bar:
                for arrays in self._batches_from_files(files):
                    out.append(self._features_uint8(arrays))
                    bar.update(len(arrays))
        elif isinstance(source, torch.Tensor):
            images = source if num_samples is None else source[:num_samples]
            with self._progress(len(images), desc) as bar:
                for i in range(0, len(images), self.batch_size):
                    batch = quantize(images[i:i + self.batch_size], value_range)
                    out.append(self._run(batch))
                    bar.update(len(batch))
        elif callable(source) and not isinstance(source, torch.utils.data.Dataset):
            if num_samples is None or num_samples < 1:
                raise UserError("a generator source needs num_samples >= 1 (--num-samples)")
            with self._progress(num_samples, desc) as bar:
                done = 0
                while done < num_samples:
                    n = min(self.batch_size, num_samples - done)
                    batch = source(n)
                    feats = self._generated(batch, value_range)[:n]
                    if len(feats) == 0:
                        raise UserError("the generator returned no images: check the model")
                    out.append(feats)
                    done += len(feats)
                    bar.update(len(feats))
        elif isinstance(source, (Sequence, torch.utils.data.Dataset)):
            n = len(source) if num_samples is None else min(num_samples, len(source))
            with self._progress(n, desc) as bar:
                for i in range(0, n, self.batch_size):
                    items = [source[j] for j in range(i, min(n, i + self.batch_size))]
                    out.append(self._generated(items, value_range))
                    bar.update(len(items))
        else:
            raise UserError(f"cannot read images from a {type(source).__name__}: pass a folder, a tensor, "
                            "a list of images, a dataset or a generator function")
        if not out:
            raise UserError("no images to score")
        return np.concatenate(out)

    def _generated(self, batch: Any, value_range: tuple[float, float]) -> np.ndarray:
        """Features of what a generator or dataset hands back: PIL images, tensors, dicts, outputs."""
        from PIL import Image

        if hasattr(batch, "images"):  # an ImageOutput
            batch = batch.images
        if isinstance(batch, torch.Tensor):
            if batch.ndim == 3:
                batch = batch[None]
            return self._run(quantize(batch, value_range))
        items = list(batch)
        if items and isinstance(items[0], dict):
            items = [it["image"] for it in items]
        if items and isinstance(items[0], Image.Image):
            return self._features_uint8([_pil_uint8(im) for im in items])
        if items and isinstance(items[0], (str, os.PathLike)):
            return self._features_uint8([_read_uint8(Path(p)) for p in items])
        if items and isinstance(items[0], torch.Tensor):
            return self._run(quantize(torch.stack(items), value_range))
        raise UserError(f"cannot score items of type {type(items[0]).__name__ if items else 'nothing'}: "
                        "return PIL images or (B, C, H, W) tensors")

    def statistics(self, source: Source, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of a source, or read from a .npz file."""
        if isinstance(source, (str, os.PathLike)) and str(source).endswith(".npz"):
            return load_stats(source)
        return statistics(self.features(source, **kw))


def fid(source1: Source, source2: Source, extractor: FeatureExtractor | None = None, **kw: Any) -> float:
    """FID between two sources (folders, .npz statistics, tensors in [0, 1], generator callables...)."""
    extractor = extractor or FeatureExtractor(**kw)
    return frechet_distance(*extractor.statistics(source1), *extractor.statistics(source2))
