"""GAN data augmentation on digits: a small classifier trained on few real digits, with and without
synthetic ones from the shipped class-conditional DCGAN, scored on the held-out real test split.

    python -m benchmarks.gan_augmentation                  # 10 real per class, 100 synthetic per class, 3 seeds
    python -m benchmarks.gan_augmentation --real-per-class 5 --synthetic-per-class 200 --min-confidence 0.9
    python -m benchmarks.gan_augmentation --toy            # seconds: what the tests run

Three training sets per seed, the same classifier recipe (utils/nn/small_classifier.py, fixed steps):
  real            k real digits per class (drawn by the seed from the scikit-learn digits train split);
  real+gan        those and the synthetic folder inference/augment_dataset.py would write (utils/gan/synthetic.py);
  real+gan-filt   those and only the synthetic digits that the real-only classifier gives their class with
                  at least --min-confidence.
Accuracy is on the whole real test split (digits the GAN never saw: it was trained on the train split).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def few_real(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from utils.data.digits import digits_tensor

    x, y = digits_tensor(size=32, split="train")
    gen = torch.Generator().manual_seed(seed)
    keep = []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        if len(idx) < k:
            raise UserError(f"--real-per-class {k} is more than the {len(idx)} train digits of class {c}")
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    keep = torch.cat(keep)
    return x[keep], y[keep].long()


def synthetic(pipe, per_class: int, seed: int, classifier=None, min_confidence: float = 0.9):
    from utils.data.image_folder import ImageFolderDataset
    from utils.gan.synthetic import write_synthetic_folder

    with tempfile.TemporaryDirectory() as tmp:
        result = write_synthetic_folder(pipe, Path(tmp), per_class, [str(c) for c in range(10)], seed=seed,
                                        classifier=classifier, min_confidence=min_confidence, max_tries=5)
        if not sum(result["written"].values()):
            return torch.zeros(0, 1, 32, 32), torch.zeros(0, dtype=torch.long), result
        data = ImageFolderDataset(tmp, class_labels=True, size=32, captions=False, verify=False)
        x = torch.stack([data[i]["image"][:1] for i in range(len(data))])
        y = torch.tensor([int(data.classes[data[i]["label"]]) for i in range(len(data))])
    return x, y, result


def parse_args(argv: list[str] | None = None):
    p = ArgumentParser(prog="python -m benchmarks.gan_augmentation", description="GAN data augmentation on digits.")
    p.add_argument("--real-per-class", type=int, default=10, help="real training digits per class")
    p.add_argument("--synthetic-per-class", type=int, default=100, help="synthetic digits per class")
    p.add_argument("--min-confidence", type=float, default=0.9, help="the filter's least softmax probability")
    p.add_argument("--steps", type=int, default=400, help="classifier training steps (batch 64)")
    p.add_argument("--seeds", type=int, default=3, help="repetitions (real subset, noise and classifier seeds)")
    p.add_argument("--weights", default=None, help="a conditional DCGAN checkpoint (default: the shipped digits one)")
    p.add_argument("--toy", action="store_true", help="5 real and 10 synthetic per class, 30 steps, 1 seed")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    with cli_errors("benchmarks/gan_augmentation.py"):
        args = parse_args(argv)
        for flag, v in (("--real-per-class", args.real_per_class), ("--synthetic-per-class", args.synthetic_per_class),
                        ("--steps", args.steps), ("--seeds", args.seeds)):
            if v < 1:
                raise UserError(f"{flag} must be at least 1, got {v}")
        k, m, steps, seeds = args.real_per_class, args.synthetic_per_class, args.steps, args.seeds
        if args.toy:
            k, m, steps, seeds = 5, 10, 30, 1
        from models.gan.dcgan import DCGANPipeline
        from utils.data.digits import digits_tensor
        from utils.nn.small_classifier import SmallCNNConfig, accuracy, train_classifier

        t0 = time.perf_counter()
        pipe = DCGANPipeline.from_pretrained(args.weights, preset="digits", device="cpu")
        x_test, y_test = digits_tensor(size=32, split="test")
        y_test = y_test.long()
        config = SmallCNNConfig(channels=1, num_classes=10, image_size=16)
        scores: dict[str, list[float]] = {"real": [], "real+gan": [], "real+gan-filt": []}
        kept: list[int] = []
        for seed in range(seeds):
            xr, yr = few_real(k, seed)
            real_only = train_classifier(xr, yr, config, steps=steps, seed=seed)
            scores["real"].append(accuracy(real_only, x_test, y_test))
            xs, ys, _ = synthetic(pipe, m, seed)
            both = train_classifier(torch.cat([xr, xs]), torch.cat([yr, ys]), config, steps=steps, seed=seed)
            scores["real+gan"].append(accuracy(both, x_test, y_test))
            xf, yf, _ = synthetic(pipe, m, seed, classifier=real_only, min_confidence=args.min_confidence)
            kept.append(len(yf))
            filt = train_classifier(torch.cat([xr, xf]), torch.cat([yr, yf]), config, steps=steps, seed=seed)
            scores["real+gan-filt"].append(accuracy(filt, x_test, y_test))
        seconds = time.perf_counter() - t0
        r = {name: {"mean": statistics.mean(v), "std": statistics.pstdev(v), "runs": v} for name, v in scores.items()}
        r.update(real_per_class=k, synthetic_per_class=m, steps=steps, seeds=seeds, test_images=len(y_test),
                 filtered_kept=kept, seconds=seconds)
        print(f"digits, SmallCNN {steps} steps, {k} real / {m} synthetic per class, {seeds} seed(s), "
              f"test split {len(y_test)} real digits, {seconds:.0f}s")
        sizes = {"real": f"{10 * k}", "real+gan": f"{10 * k} + {10 * m}",
                 "real+gan-filt": f"{10 * k} + {statistics.mean(kept):.0f} kept"}
        for name, v in r.items():
            if isinstance(v, dict):
                print(f"  {name:14s} {sizes[name]:>16s} images   test accuracy {v['mean']:.3f} +- {v['std']:.3f}")
        return r


if __name__ == "__main__":
    main()
