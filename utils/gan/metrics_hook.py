"""FID and IS during GAN training, and the optional Weights & Biases logger (train_gan's dashboards).

    python train/train_gan.py --model dcgan --dataset digits --metrics fid,is --metrics-every 500 \
        --metrics-samples 2000 [--wandb]

Every `every` steps (and at the last step) the (EMA) generator draws `samples` images from fixed latents
(the same ones each time, labels cycling through the classes); FID compares their Inception statistics with
the dataset's, IS scores their Inception logits. Both go to TensorBoard as `metrics/fid` and
`metrics/is` and into log.jsonl, where `python -m train.plot_curves RUN_DIR` finds them.
The dataset's statistics are computed once (its first `samples` images) and cached as .npz under
`stats_dir()` (CV_GENERATIVE_STATS, default ~/.cache/cv-generative/fid_stats), keyed by the dataset,
the image size and channels, the count and the Inception weights file, so later runs reuse them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from utils.errors import UserError

METRICS = ("fid", "is")


def parse_metrics(text: str) -> tuple[str, ...]:
    """'fid,is' -> ('fid', 'is'); an unknown name is a UserError."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise UserError(f"unknown --metrics '{bad[0]}': choose from {', '.join(METRICS)} (comma-separated)")
    return names


def stats_dir() -> Path:
    return Path(os.environ.get("CV_GENERATIVE_STATS") or Path.home() / ".cache" / "cv-generative" / "fid_stats")


def build_extractor(weights: str | None, device: torch.device, need_logits: bool):
    """The Inception network of the FID / IS tools (tests replace this with a small network)."""
    from utils.metrics.fid import FeatureExtractor
    from utils.metrics.inception import load_inception

    model = load_inception(weights, device=device, need_logits=need_logits)
    return FeatureExtractor(model=model, device=device, batch_size=50, progress=False, num_workers=1)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class TrainingMetrics:
    """`due(step)` says whether a step scores; `run(step, sample)` scores `sample(n)` -> images in [-1, 1]."""

    def __init__(self, names: tuple[str, ...], every: int, samples: int, steps: int, dataset: Any,
                 dataset_key: str, device: torch.device, weights: str | None = None, splits: int = 10):
        if every < 1:
            raise UserError(f"--metrics-every must be at least 1, got {every}")
        if samples < 2:
            raise UserError(f"--metrics-samples must be at least 2 (FID needs a covariance), got {samples}")
        self.names, self.every, self.samples, self.steps = names, every, samples, steps
        self.dataset, self.dataset_key, self.device = dataset, dataset_key, device
        self.weights, self.splits = weights, min(splits, samples)
        self.extractor = build_extractor(weights, device, need_logits="is" in names)
        self._reference: tuple[np.ndarray, np.ndarray] | None = None

    def due(self, step: int) -> bool:
        return step % self.every == 0 or step == self.steps

    def reference_path(self) -> Path:
        weights = Path(self.weights).name if self.weights else "pt_inception-2015-12-05"
        key = json.dumps([self.dataset_key, self.samples, weights])
        first = self.dataset[0]["image"]
        digest = hashlib.sha1((key + str(tuple(first.shape))).encode()).hexdigest()[:12]
        safe = "".join(c if c.isalnum() else "_" for c in Path(self.dataset_key).name)[:40]
        return stats_dir() / f"{safe}-{tuple(first.shape)[-1]}px-{self.samples}-{digest}.npz"

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """The dataset's (mu, sigma), from the cache or computed once and stored there."""
        from utils.metrics.fid import load_stats, save_stats, statistics

        if self._reference is None:
            path = self.reference_path()
            if path.is_file():
                self._reference = load_stats(path)
            else:
                n = min(self.samples, len(self.dataset))
                images = torch.stack([self.dataset[i]["image"] for i in range(n)])
                mu, sigma = statistics(self.extractor.features(to_rgb(images), value_range=(-1.0, 1.0)))
                save_stats(path, mu, sigma)
                self._reference = (mu, sigma)
        return self._reference

    @torch.no_grad()
    def run(self, step: int, sample: Callable[[int], torch.Tensor]) -> dict[str, float]:
        from utils.metrics.fid import frechet_distance, statistics

        images = torch.cat([sample(min(50, self.samples - i)).float().cpu()
                            for i in range(0, self.samples, 50)])
        images = to_rgb(images.clamp(-1, 1))
        out: dict[str, float] = {}
        if "fid" in self.names:
            mu, sigma = statistics(self.extractor.features(images, value_range=(-1.0, 1.0)))
            out["fid"] = float(frechet_distance(mu, sigma, *self.reference()))
        if "is" in self.names:
            from utils.metrics.fid import quantize
            from utils.metrics.inception_score import inception_score

            model = self.extractor.model
            logits = torch.cat([model.logits(quantize(images[i:i + 50], (-1.0, 1.0)).to(self.device), bias=False)
                                for i in range(0, len(images), 50)])
            out["is"], out["is_std"] = inception_score(logits.double().cpu(), self.splits)
        return out


def latent_sampler(net: torch.nn.Module, num_classes: int, device: torch.device, seed: int
                   ) -> Callable[[int], torch.Tensor]:
    """`sample(n)`: the next n images of a fixed latent sequence (it restarts at each scoring)."""
    state = {"gen": torch.Generator().manual_seed(seed), "drawn": 0}

    def sample(n: int) -> torch.Tensor:
        z = torch.randn((n, *net.latent_shape), generator=state["gen"]).to(device)
        y = (torch.arange(state["drawn"], state["drawn"] + n) % num_classes).to(device) if num_classes else None
        state["drawn"] += n
        return net(z, y)

    return sample


class WandbLogger:
    """Scalars mirrored to Weights & Biases through accelerate's tracker (needs `pip install wandb`)."""

    def __init__(self, project: str, config: dict[str, Any], out: Path):
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("--wandb needs the wandb package: pip install wandb (and `wandb login`), or leave "
                            "--wandb out (TensorBoard logs are always written)") from None
        from accelerate.tracking import WandBTracker

        self.tracker = WandBTracker(project, dir=str(out))
        self.tracker.start()
        self.tracker.store_init_configuration(config)

    def log(self, values: dict[str, float], step: int) -> None:
        self.tracker.log(values, step=step)

    def finish(self) -> None:
        self.tracker.finish()


METRICS_LOG = "metrics.jsonl"
"""One JSON line per scoring step in the run folder: {"step": N, "fid": ..., "is": ..., "is_std": ...}."""


class Dashboards:
    """What train_gan's loop calls: `step(done, log)` after each step, `close()` at the end.

    Built by `Dashboards.attach(trainer)` from the trainer's options (metrics, metrics_every, metrics_samples,
    metrics_weights, wandb); without any of them every call does nothing."""

    def __init__(self, trainer: Any):
        from dataclasses import asdict

        opts, s = trainer.options, trainer.settings
        self.trainer, self.metrics, self.wandb = trainer, None, None
        self.log_every = opts.log_every
        self.main = trainer.accelerator.is_main_process
        names = parse_metrics(getattr(opts, "metrics", "") or "")
        if names and trainer.recipe.sampler is not None:
            raise UserError(f"--metrics scores latent-to-image GANs; {s.model} translates or upscales images "
                            "(use evaluate/fid_score.py on its outputs instead)")
        if not self.main:
            return
        path = trainer.out / METRICS_LOG
        if trainer.start == 0:
            path.unlink(missing_ok=True)
        elif path.exists():
            from utils.training.runs import trim_jsonl

            trim_jsonl(path, trainer.start)
        if names:
            key = f"{s.dataset}|{Path(s.data_dir).resolve() if getattr(s, 'data_dir', '') else ''}"
            self.metrics = TrainingMetrics(names, opts.metrics_every, opts.metrics_samples, s.steps, trainer.dataset,
                                           key, trainer.device, weights=opts.metrics_weights)
        if getattr(opts, "wandb", False):
            self.wandb = WandbLogger("cv-generative", asdict(s), trainer.out)

    @classmethod
    def attach(cls, trainer: Any) -> "Dashboards":
        return cls(trainer)

    def step(self, done: int, log: dict[str, float]) -> None:
        if not self.main:
            return
        scores: dict[str, float] = {}
        if self.metrics is not None and self.metrics.due(done):
            t = self.trainer
            net = t.ema.shadow if t.ema is not None else t.unwrapped_g
            was_training = net.training
            net.eval()
            num_classes = getattr(t.config, "num_classes", 0) if t.conditional else 0
            scores = self.metrics.run(done, latent_sampler(net, num_classes, t.device, t.settings.seed + 4321))
            net.train(was_training)
            for k, v in scores.items():
                t.writer.add_scalar(f"metrics/{k}", v, done)
            with open(t.out / METRICS_LOG, "a") as f:
                f.write(json.dumps({"step": done, **scores}) + "\n")
        if self.wandb is not None and (done % self.log_every == 0 or done == self.trainer.settings.steps or scores):
            self.wandb.log({**{f"train/{k}": v for k, v in log.items()},
                            **{f"metrics/{k}": v for k, v in scores.items()}}, done)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
