"""The command line of every script: one-line usage errors, and argument validation in one place.

`ArgumentParser` is argparse with three additions that every script inherits without code of its own:

- a usage mistake is one line on stderr (`prog: error: ... (see prog --help)`) and exit code 2;
- `--debug` (tracebacks and third-party warnings, see `utils.errors.cli_errors`);
- output options (`--out`, `--output_dir`) are checked writable before anything loads: no file in the
  way of a folder, no read-only or full disk (`utils.io.check_output_path`);
- the values of well-known options are checked before anything loads, by their name (`RULES`):
  sizes, counts and intervals must be positive, workers and "0: none" options non-negative, guidance
  in [0, 100], strength in (0, 1], learning rates positive, seeds in 0..2**63-1 or -1 (a random seed,
  printed so that the run can be repeated); every int fits in 64 bits and every float is finite. A
  script opts an option out by giving it its own `type=` (anything but plain int or float).

Counts that can run for days or exhaust memory (images, frames, steps, sizes) are capped per modality
(`CAPS`): `parser.add_limits(modality)` adds `--force` (lifts every cap) and `--max-images`,
`--max-frames`, `--max-steps`, `--max-size` (raise one cap); `check_limits(args, modality)` checks them
once the modality is known (the parser does it itself when `add_limits` was given the modality).

The same value rules serve the Python facade: `check_value(name, value)`.
"""
from __future__ import annotations

import argparse
import math
import secrets
import sys
from typing import Any, Callable, NoReturn, Sequence

from utils.errors import UserError, set_debug

SEED_MAX = 2**63
"""Seeds lie in 0 <= seed < SEED_MAX (what a torch generator takes); -1 on a command line draws one."""
INT_MAX = 2**63
"""No integer option reaches this (every int an option passes on fits in 64 bits)."""


# -- value checks --------------------------------------------------------------------------------------

class Check:
    """A named value rule: `Check(kind, test, needs)` called on a string (argparse) or a value (facade)."""

    def __init__(self, kind: type, test: Callable[[Any], bool], needs: str):
        self.kind, self.test, self.needs = kind, test, needs
        self.__name__ = needs  # argparse names the type in 'invalid <name> value'

    def parse(self, text: str) -> Any:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"invalid {self.kind.__name__} value: '{text}' (it must be "
                                             f"{self.needs})") from None
        if not self.ok(value):
            raise argparse.ArgumentTypeError(f"must be {self.needs}, got {text}")
        return value

    __call__ = parse

    def ok(self, value: Any) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        if self.kind is int and not -INT_MAX < value < INT_MAX:
            return False
        return bool(self.test(value))


def _number(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, float))
    return isinstance(value, (int, float))


positive_int = Check(int, lambda v: v >= 1, "at least 1")
nonnegative_int = Check(int, lambda v: v >= 0, "0 or more")
positive_float = Check(float, lambda v: v > 0, "more than 0")
nonnegative_float = Check(float, lambda v: v >= 0, "0 or more")
any_int = Check(int, lambda v: True, "between -2**63 and 2**63")
any_float = Check(float, lambda v: True, "a finite number")
guidance_value = Check(float, lambda v: 0 <= v <= 100, "a guidance scale in [0, 100]")
strength_value = Check(float, lambda v: 0 < v <= 1, "a strength in (0, 1]")
unit_interval_open = Check(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
seed_value = Check(int, lambda v: v == -1 or 0 <= v < SEED_MAX,
                   "a seed in 0..2**63-1 (or -1 for a random seed)")


def float_in(lo: float, hi: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """A float in the interval from `lo` to `hi` (closed unless told)."""
    test = lambda v: (lo < v if low_open else lo <= v) and (v < hi if high_open else v <= hi)  # noqa: E731
    return Check(float, test, f"a number in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}")


RULES: dict[str, Check] = {
    **dict.fromkeys(("seed",), seed_value),
    **dict.fromkeys(("height", "width", "size", "image_size", "resolution", "cube_len", "num_images",
                     "num_videos", "num_frames", "frames", "n_views", "steps", "batch_size", "n_critic",
                     "n_epochs", "num_views", "downscale", "cap_max", "log_every", "sample_every", "ckpt_every",
                     "save_every", "eval_every", "z_size", "num_samples", "splits", "max_sequence_length",
                     "kid_subsets", "kid_subset_size", "num_pairs", "decode_chunk_size", "samples",
                     "image_steps", "upsample_steps"),
                    positive_int),
    **dict.fromkeys(("workers", "num_workers", "threads", "keep", "turntable_frames", "vis_every",
                     "lr_decay_start", "start_epoch"), nonnegative_int),
    **dict.fromkeys(("guidance", "guidance_scale", "true_cfg", "cfg_scale", "min_guidance", "max_guidance"),
                    guidance_value),
    **dict.fromkeys(("strength",), strength_value),
    **dict.fromkeys(("lr", "lr_g", "lr_d", "g_lr", "e_lr", "d_lr", "fps"), positive_float),
    **dict.fromkeys(("gp_weight", "r1_weight", "recon_weight", "kl_weight_start", "kl_weight_end"),
                    nonnegative_float),
    **dict.fromkeys(("ema",), unit_interval_open),
}
"""Option (dest) name -> its check, for options declared with a plain `type=int` / `type=float`."""


def check_value(name: str, value: Any) -> Any:
    """The facade's check of one call argument by the rule of its name: a `UserError` when it breaks it.

    Lists and tuples (one seed per image) are checked element by element; None passes.
    """
    rule = RULES.get(name)
    if rule is None or value is None:
        return value
    if isinstance(value, (list, tuple)) and name == "seed":
        for v in value:
            check_value(name, v)
        return value
    if not _number(value, rule.kind):
        kind = "an integer" if rule.kind is int else "a number"
        raise UserError(f"{name} must be {kind} ({rule.needs}), got {type(value).__name__} {value!r}")
    if name == "seed" and value == -1:
        raise UserError("seed -1 is the command lines' random seed: in Python pass a seed in 0..2**63-1 "
                        "(e.g. random.randrange(2**63)) and keep it to make the same output again")
    if not rule.ok(value):
        raise UserError(f"{name} must be {rule.needs}, got {value!r}")
    return value


# -- caps on counts --------------------------------------------------------------------------------------

CAPS: dict[str, dict[str, int]] = {
    "gan": {"num_images": 1024},
    "image": {"num_images": 16, "steps": 500, "height": 4096, "width": 4096},
    "video": {"num_videos": 4, "num_frames": 256, "frames": 256, "steps": 500, "height": 2048, "width": 2048},
    "3d": {"frames": 1440, "n_views": 1440, "size": 4096, "turntable_frames": 1440, "steps": 1024,
           "upsample_steps": 1024},
}
"""Modality -> option -> the most a run takes without --force or the option's --max-* flag."""

OUTPUT_DESTS = ("out", "output_dir", "out_dir")
"""Options naming an output file or folder: checked writable at parse time (`utils.io.check_output_path`),
before anything loads. A default computed later is checked by the script."""

LIFTS: dict[str, str] = {"num_images": "max_images", "num_videos": "max_images", "num_frames": "max_frames",
                         "frames": "max_frames", "n_views": "max_frames", "turntable_frames": "max_frames",
                         "steps": "max_steps", "upsample_steps": "max_steps", "height": "max_size", "width": "max_size",
                         "size": "max_size"}
"""Option -> the dest of the --max-* flag that raises its cap."""


def check_limits(args: argparse.Namespace, modality: str) -> None:
    """Refuse a count above its modality's cap unless --force, or its --max-* flag allows it."""
    if getattr(args, "force", False):
        return
    for dest, cap in CAPS.get(modality, {}).items():
        value = getattr(args, dest, None)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        lift = LIFTS.get(dest)
        allowed = getattr(args, lift, None) if lift else None
        limit = cap if allowed is None else allowed
        if value > limit:
            flag, lift_flag = "--" + dest.replace("_", "-"), "--" + (lift or "").replace("_", "-")
            raise UserError(f"{flag} {value} is above the cap of {limit} for {modality} models: it could run for "
                            f"hours or exhaust memory; pass {lift_flag} {value} (or --force) if you mean it")


# -- the parser ------------------------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse, with one-line errors, --debug, and the checks of the module docstring."""

    def __init__(self, *args: Any, debug: bool = True, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)
        self.limits_modality: str | None = None
        if debug:
            self.add_argument("--debug", action="store_true",
                              help="on an error, show the full traceback and third-party warnings")

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)

    def add_limits(self, modality: str | None = None) -> "ArgumentParser":
        """--force and the --max-* flags of the capped options declared so far; with `modality`, the
        caps are checked at parse time (else call `check_limits(args, modality)`)."""
        dests = {a.dest for a in self._actions}
        if "force" not in dests:
            self.add_argument("--force", action="store_true",
                              help="lift the caps on counts and sizes (images, frames, steps, pixels)")
        for lift in sorted({LIFTS[d] for d in dests if d in LIFTS}):
            if lift not in dests:
                what = lift.removeprefix("max_")
                self.add_argument(f"--{lift.replace('_', '-')}", type=positive_int, default=None, metavar="N",
                                  help=f"raise the cap on {what} to N (default: the modality's cap)")
        self.limits_modality = modality
        return self

    def _checked_types(self) -> None:
        """Give each plain int/float option the check of its name (or the generic one)."""
        for action in self._actions:
            if action.type is int:
                rule = RULES.get(action.dest)
                action.type = rule if rule is not None and rule.kind is int else any_int
            elif action.type is float:
                rule = RULES.get(action.dest)
                action.type = rule if rule is not None and rule.kind is float else any_float

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        self._checked_types()
        ns, rest = super().parse_known_args(args, namespace)
        if getattr(ns, "debug", False):
            set_debug(True)
        if getattr(ns, "seed", None) == -1 and isinstance(self._action_type("seed"), Check):
            ns.seed = secrets.randbelow(SEED_MAX)
            print(f"{self.prog}: --seed -1: drew seed {ns.seed} (pass --seed {ns.seed} to repeat this run)",
                  file=sys.stderr)
        if self.add_help:  # the full parser, not a script's peek at --model
            try:
                if self.limits_modality is not None:
                    check_limits(ns, self.limits_modality)
                for dest in OUTPUT_DESTS:
                    value = getattr(ns, dest, None)
                    if isinstance(value, str) and value:
                        from utils.io import check_output_path

                        check_output_path(value, "any", flag=self._flag(dest))
            except UserError as err:
                print(f"{self.prog}: error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
        return ns, rest

    def _flag(self, dest: str) -> str:
        action = next((a for a in self._actions if a.dest == dest), None)
        return max(action.option_strings, key=len) if action is not None and action.option_strings else dest

    def _action_type(self, dest: str) -> Any:
        return next((a.type for a in self._actions if a.dest == dest), None)
