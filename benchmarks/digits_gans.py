"""Quality and speed of the GANs shipped with weights trained on the scikit-learn digits.

    python -m benchmarks.digits_gans [--num-images 1000] [--device cpu] [--toy]

Quality: a logistic-regression classifier trained on the real 8x8 digits (train split) reads
each generated image (average-pooled to 8x8) and the score is the share it assigns to the class
the generator was asked for; the same classifier on the real test split gives the ceiling.
There is no installed reference implementation of these small GANs, so speed is reported as
generator throughput alone (images per second), not as a ratio. `--toy` (100 images, small
throughput batches) is what the test suite runs, so this code cannot rot.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from utils.cli import ArgumentParser
from utils.errors import cli_errors


def digits_classifier():
    from sklearn.linear_model import LogisticRegression

    from utils.data.digits import digits_tensor

    x, y = digits_tensor(size=8, split="train")
    clf = LogisticRegression(max_iter=3000).fit(((x + 1) / 2).flatten(1).numpy(), y.numpy())
    xt, yt = digits_tensor(size=8, split="test")
    ceiling = float(np.mean(clf.predict(((xt + 1) / 2).flatten(1).numpy()) == yt.numpy()))
    return clf, ceiling


def class_accuracy(clf, images: torch.Tensor, labels: torch.Tensor) -> float:
    small = F.adaptive_avg_pool2d((images.float() + 1) / 2, 8).flatten(1).numpy()
    return float(np.mean(clf.predict(small) == labels.numpy()))


def throughput(pipe, batch: int = 256, repeats: int = 5) -> float:
    """Generator forward passes in images per second (the conversion to PIL images is not timed)."""
    gen = torch.Generator().manual_seed(0)
    z = pipe.sample_latents(batch, gen).to(pipe.device, pipe.dtype)
    y = pipe.labels_from(None, None, batch, gen)
    y = None if y is None else y.to(pipe.device)
    sync = torch.cuda.synchronize if pipe.device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        pipe.generator(z, y)  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(repeats):
            pipe.generator(z, y)
        sync()
        return batch * repeats / (time.perf_counter() - t0)


@cli_errors("benchmarks.digits_gans")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.digits_gans", description=__doc__.splitlines()[0])
    p.add_argument("--num-images", type=int, default=1000, help="generated images scored per model (default 1000)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: 100 images, throughput batches of 32")
    args = p.parse_args(argv)
    batch, repeats = (32, 2) if args.toy else (256, 5)
    if args.toy:
        args.num_images = 100
    import models

    clf, ceiling = digits_classifier()
    print(f"classifier accuracy on the real test digits (ceiling): {ceiling:.3f}")
    print("| model | class accuracy of generated digits | generator images/s |")
    print("|---|---|---|")
    rows = {"ceiling": ceiling}
    for name in ("dcgan", "vanilla_gan"):
        pipe = models.load("gan", name, preset="digits", device=args.device)
        out = pipe(num_images=args.num_images, seed=1)
        acc = class_accuracy(clf, out.pixels * 2 - 1, out.labels)
        speed = throughput(pipe, batch, repeats)
        rows[name] = {"class_accuracy": acc, "images_per_s": speed, "num_images": len(out.labels)}
        print(f"| {name} | {acc:.3f} | {speed:.0f} |")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    return rows


if __name__ == "__main__":
    main()
