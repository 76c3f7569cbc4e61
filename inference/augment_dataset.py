"""Write a class-balanced synthetic image folder from a conditional GAN (GAN data augmentation).

    python -m inference.augment_dataset --model dcgan --per-class 500 --out synthetic_digits/
    python -m inference.augment_dataset --model dcgan --weights runs/dcgan/generator.safetensors \
        --per-class 500 --out synthetic/ --classifier clf.safetensors --min-confidence 0.9

The folder holds one subfolder per class and a metadata.jsonl with each file's label (see
utils/gan/synthetic.py); mix it with the real images (`ImageFolderDataset(..., class_labels=True)`).
With --classifier (a utils.nn.small_classifier file; benchmarks/gan_augmentation.py --save-classifier
writes one) only images it assigns to their intended class with at least --min-confidence are kept.
With --balance REAL_FOLDER (class subfolders), --per-class is a target: each class gets only the images it
lacks there (the seed's class-balanced augmentation).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="augment_dataset.py", description="A class-balanced synthetic dataset from a GAN.")
    p.add_argument("--model", default="dcgan", help="a class-conditional GAN of the zoo (dcgan, biggan, ...)")
    p.add_argument("--preset", default=None, help="model preset (default: the model's; dcgan: the shipped digits)")
    p.add_argument("--weights", default=None, help="generator checkpoint (default: the preset's weights)")
    p.add_argument("--per-class", type=int, required=True, help="images written per class")
    p.add_argument("--classes", default=None, help="comma-separated class names or indices (default: all)")
    p.add_argument("--out", required=True, help="output folder (must be empty or new)")
    p.add_argument("--balance", default=None,
                   help="a real class-per-subfolder dataset: write only what each class lacks to reach --per-class")
    p.add_argument("--classifier", default=None, help="keep only images this classifier recognises")
    p.add_argument("--min-confidence", type=float, default=0.9, help="the classifier's least softmax probability")
    p.add_argument("--max-tries", type=int, default=10, help="draws per class at most, in units of --per-class")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise: the same seed, the same folder")
    p.add_argument("--batch-size", type=int, default=100, help="images per generator call")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    return p


def main(argv: list[str] | None = None) -> dict:
    with cli_errors("augment_dataset.py"):
        args = build_parser().parse_args(argv)
        from models.registry import find_spec
        from utils.io import check_output_path

        spec = find_spec(args.model, ("gan",))
        preset = spec.check_preset(args.preset)
        for flag, v in (("--per-class", args.per_class), ("--batch-size", args.batch_size),
                        ("--max-tries", args.max_tries)):
            if v < 1:
                raise UserError(f"{flag} must be at least 1, got {v}")
        if not 0 <= args.min_confidence <= 1:
            raise UserError(f"--min-confidence must be in [0, 1], got {args.min_confidence}")
        out = Path(args.out)
        check_output_path(out, "folder")
        if out.is_dir() and any(out.iterdir()):
            raise UserError(f"--out {out} is not empty: choose a new folder (a synthetic dataset is written whole)")
        classifier = None
        if args.classifier is not None:
            from utils.nn.small_classifier import load_classifier

            classifier = load_classifier(args.classifier)
        from models.gan.pipeline_base import LatentGANPipeline

        pipe_cls = spec.pipeline_class()
        if not issubclass(pipe_cls, LatentGANPipeline):
            raise UserError(f"{spec.name} does not generate from noise and class labels: use a class-conditional "
                            "GAN such as dcgan (digits) or biggan")
        pipe = pipe_cls.from_pretrained(args.weights, preset=preset, device=args.device)
        num_classes = getattr(pipe.config, "num_classes", 0)
        if not num_classes:
            raise UserError(f"{spec.name} preset '{preset}' is unconditional: a class-balanced dataset needs a "
                            "class-conditional generator (e.g. --model dcgan --preset digits)")
        names = list(pipe.class_names) or [str(i) for i in range(num_classes)]
        classes = None
        if args.classes:
            classes = []
            for token in (t.strip() for t in args.classes.split(",") if t.strip()):
                if token in names:
                    classes.append(names.index(token))
                elif token.isdigit() and int(token) < num_classes:
                    classes.append(int(token))
                else:
                    from utils.errors import did_you_mean

                    raise UserError(f"'{token}' is not a class of this {spec.name}: {did_you_mean(token, names)}")
        if classifier is not None and classifier.config.num_classes != num_classes:
            raise UserError(f"the classifier has {classifier.config.num_classes} classes but the generator "
                            f"{num_classes}: pass a classifier trained on the same classes")
        have = None
        if args.balance is not None:
            from utils.data.image_folder import ImageFolderDataset

            real = ImageFolderDataset(args.balance, class_labels=True, captions=False, verify=False)
            unknown = [c for c in real.classes if c not in names]
            if unknown:
                raise UserError(f"--balance {args.balance} has class folder '{unknown[0]}', which the generator does "
                                f"not know (its classes: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''})")
            have = {}
            for label in real.labels or []:
                c = names.index(real.classes[label])
                have[c] = have.get(c, 0) + 1
        from utils.gan.synthetic import write_synthetic_folder

        t0 = time.perf_counter()
        result = write_synthetic_folder(pipe, out, args.per_class, names, seed=args.seed, classifier=classifier,
                                        min_confidence=args.min_confidence, batch_size=args.batch_size,
                                        max_tries=args.max_tries, classes=classes, have=have)
        short = {k: v for k, v in result["written"].items()
                 if v < args.per_class - (have or {}).get(names.index(k) if k in names else -1, 0)}
        if short:
            from utils.errors import warn_user

            warn_user(f"the classifier accepted fewer than {args.per_class} images for class(es) "
                      f"{', '.join(f'{k} ({v})' for k, v in short.items())} within --max-tries {args.max_tries}: "
                      "lower --min-confidence or raise --max-tries", prog="augment_dataset.py")
        total = sum(result["written"].values())
        print(f"wrote {total} images ({len(result['written'])} classes) and {result['metadata']} in "
              f"{time.perf_counter() - t0:.1f}s")
        return result


if __name__ == "__main__":
    main()
