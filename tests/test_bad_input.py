"""Bad input, every command line: one line on stderr, exit 2, no traceback, nothing left behind.

The command lines are found, not listed (`tests.helpers.clis.discover`: every script under train/,
inference/, evaluate/ and benchmarks/ with a `main`, each model of a dispatcher), and each one's
parser is read to build its cases, so a new script or option is covered without an edit here:

- options: every option checked by its name or type (utils.cli.RULES: sizes, counts, seeds,
  guidance, strength, rates, finite floats, 64-bit ints) is given a value its rule refuses;
- counts: an option with a per-modality cap is given a huge count (lifted only by --force/--max-*);
- outputs: --out (and --output_dir...) under a file, on a read-only and on a full disk;
- files: every weights/checkpoint option gets a missing path, an empty file, a truncated
  safetensors, random bytes, another model's checkpoint, malicious .pkl/.pt/.ckpt/.bin files
  (their payload would create a PWNED file) and an offline hub id; every image option a missing,
  empty, text, random-bytes and truncated image;
- names: an unknown --model and --preset, and an unknown option.

Each case runs main() in this process (fast); `test_real_processes` runs a few as real commands for
the exit code and stderr. The messages make docs/errors.md: CVGEN_WRITE_ERRORS_DOC=1 rewrites it
from a full run, and every case checks its row there.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.bad_files import IMAGE_KINDS, PWNED, WEIGHT_KINDS, make_bad_files
from tests.helpers.clis import ROOT, Cli, captured_parser, discover

CLIS = discover()
DOC = ROOT / "docs" / "errors.md"
WRITE_DOC = os.environ.get("CVGEN_WRITE_ERRORS_DOC") == "1"

WEIGHT_FLAGS = ("--weights", "--resume", "--ply", "--ckpt", "--model-weights", "--backbone-weights", "--model_path")
"""Options that take a weights or checkpoint file."""
IMAGE_FLAGS = ("--image", "--mask", "--control", "--input")
"""Options that take an image file (or a folder of them)."""

BASE_ARGS: dict[str, tuple[str, ...]] = {
    "translate_image": ("--input", "{ok_image}"),
    "ppl_score": ("--model", "dcgan"),
    "voxel_vae_gan": ("--model_path", "{folder}"),
    "lpips_score": ("{images}", "{images}"),
    "fid_score": ("{images}", "{images}"),
    "plot_curves": ("{folder}",),
    "generate_video": ("--prompt", "a fox"),
    "generate_video[svd]": ("--image", "{ok_image}"),
    "generate_3d[point_e]": ("--prompt", "a chair"),
    "generate_3d[shap_e]": ("--prompt", "a chair"),
}
"""What a command line needs besides the option under test to get past its parser (required options and
positionals), by command line ('generate_video[svd]') or script ('generate_video'). '{name}' is one of the
bad-files fixtures (or 'folder', 'images')."""

FILE_BASE_ARGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("translate_image", "--weights"): (),
    ("translate_image", "--input"): ("--preset", "tiny"),
    ("fid_score", "--model-weights"): ("--model", "dcgan", "--num-samples", "2"),
    ("inception_score", "--model-weights"): ("--model", "dcgan", "--num-samples", "2"),
    ("inception_score", "--weights"): ("{images}",),
    ("generate_3d[voxel_vae_gan]", "--model_path"): ("--images", "{ok_image}"),
}
"""Extra arguments for one (command line, file option) so that the file is read."""

FILE_BASE_REPLACES: dict[tuple[str, str], tuple[str, ...]] = {
    ("fid_score", "--model-weights"): ("{images}", "--model", "dcgan", "--num-samples", "2"),
}
"""As FILE_BASE_ARGS, but in place of BASE_ARGS (fid_score: one folder and the model make the two sets)."""

CASE_ARGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("fid_score", "--preset no_such_preset"): ("{images}", "--model", "dcgan"),
    ("inception_score", "--preset no_such_preset"): ("--model", "dcgan"),
    ("clip_score", "--model no_such_model"): ("{images}", "--prompt", "a fox"),
    ("frame_consistency", "--model no_such_model"): ("{images}",),
    ("metrics_3d", "unknown option"): ("points", "{missing}", "{missing}"),
    ("user_study", "unknown option"): ("report", "{missing}"),
    ("user_study", "--out under a file"): ("report", "{missing}"),
    ("user_study", "--out on a read-only disk"): ("report", "{missing}"),
    ("user_study", "--out on a full disk"): ("report", "{missing}"),
}
"""The arguments one case needs in place of the command line's BASE_ARGS (its other required arguments,
a subcommand), by (command line, case label)."""

RULE_VALUES = {"at least 1": "0", "0 or more": "-1", "more than 0": "-1", "a guidance scale in [0, 100]": "-5",
               "a strength in (0, 1]": "2", "a number in [0, 1)": "1",
               "a seed in 0..2**63-1 (or -1 for a random seed)": "99999999999999999999",
               "between -2**63 and 2**63": "99999999999999999999", "a finite number": "nan"}
"""A value each rule of utils.cli refuses (by its `needs` text)."""


@dataclass
class Case:
    family: str
    label: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...] = ()
    patch: str | None = None
    """'readonly' or 'full': the disk of the output is made read-only or full for the call."""
    base: tuple[str, ...] | None = None
    """Arguments in place of the command line's BASE_ARGS for this case (FILE_BASE_REPLACES)."""


# -- building the cases from a parser ---------------------------------------------------------------

def _prefix(info, flag: str) -> tuple[str, ...]:
    return info.subcommand.get(flag, ())


def option_cases(cli: Cli, info) -> list[Case]:
    from utils.cli import Check

    info.parser._checked_types()
    cases = []
    for sub in _subparsers(info):
        sub._checked_types()
    for flag, action in sorted(info.actions.items()):
        rule = action.type
        if not isinstance(rule, Check) or rule.needs not in RULE_VALUES or action.nargs not in (None, "?"):
            continue
        value = RULE_VALUES[rule.needs]
        cases.append(Case("options", f"{flag} {value}", (*_prefix(info, flag), flag, value), (flag,)))
    return cases


def _subparsers(info):
    import argparse

    out = []
    stack = [info.parser]
    while stack:
        p = stack.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                out += list(a.choices.values())
                stack += list(a.choices.values())
    return out


def count_cases(cli: Cli, info) -> list[Case]:
    from utils.cli import CAPS

    if "--force" not in info.actions:
        return []
    capped = {d for caps in CAPS.values() for d in caps}
    cases = []
    for flag, action in sorted(info.actions.items()):
        if action.dest in capped and flag == max(action.option_strings, key=len):
            # the message may be the model's own refusal (a GAN of one size); tests/utils/test_cli.py checks the caps
            cases.append(Case("counts", f"{flag} 10000000", (*_prefix(info, flag), flag, "10000000")))
    return cases


def output_cases(cli: Cli, info) -> list[Case]:
    from utils.cli import OUTPUT_DESTS

    cases = []
    for flag, action in sorted(info.actions.items()):
        if action.dest not in OUTPUT_DESTS or flag != max(action.option_strings, key=len):
            continue
        pre = _prefix(info, flag)
        cases += [Case("outputs", f"{flag} under a file", (*pre, flag, "{file_in_the_way}/out"), ("is a file",)),
                  Case("outputs", f"{flag} on a read-only disk", (*pre, flag, "{outdir}/out"), ("read-only",),
                       "readonly"),
                  Case("outputs", f"{flag} on a full disk", (*pre, flag, "{outdir}/out"), ("full",), "full")]
    return cases


def file_cases(cli: Cli, info) -> list[Case]:
    cases = []
    for flag in sorted(info.actions):
        kinds = WEIGHT_KINDS if flag in WEIGHT_FLAGS else IMAGE_KINDS if flag in IMAGE_FLAGS else ()
        extra = FILE_BASE_ARGS.get((cli.name, flag), ())
        for kind in kinds:  # the message names the file (or the option): it was read, not refused for another reason
            cases.append(Case("files", f"{flag} {kind}", (*_prefix(info, flag), *extra, flag, "{" + kind + "}"),
                              ("{name:" + kind + "}",), base=FILE_BASE_REPLACES.get((cli.name, flag))))
    return cases


def name_cases(cli: Cli, info) -> list[Case]:
    cases = [Case("names", "unknown option", ("--no-such-option", "1"), ("--no-such-option",))]
    if "--model" in info.actions and not cli.model and info.actions["--model"].choices is None:
        cases.append(Case("names", "--model no_such_model", ("--model", "no_such_model"), ("no_such_model",)))
    if "--preset" in info.actions and info.actions["--preset"].choices is None and not _prefix(info, "--preset"):
        cases.append(Case("names", "--preset no_such_preset", ("--preset", "no_such_preset"), ("no_such_preset",)))
    return cases


FAMILIES = {"options": option_cases, "counts": count_cases, "outputs": output_cases, "files": file_cases,
            "names": name_cases}


# -- running one case --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    files = make_bad_files(folder)
    images = folder / "images"
    images.mkdir()
    shutil.copy(files["ok_image"], images / "a.png")
    files.update(folder=folder, images=images)
    return files


@pytest.fixture(scope="module")
def messages():
    """(cli, family, case label) -> the message, for docs/errors.md."""
    return {}


RAN: set[tuple[str, str]] = set()
"""The (command line, family) tests that ran in this session."""


def _fill(argv, files, outdir) -> list[str]:
    table = {**{k: str(v) for k, v in files.items()}, "outdir": str(outdir)}
    return [a.format(**table) if "{" in a else a for a in argv]


class _Timeout(Exception):
    pass


def required_args(info, argv: list[str]) -> list[str]:
    """A harmless value for each required option of the top-level parser that `argv` does not give, so the
    case reaches what it tests (a required --out gets a path under the work folder, an image option a good
    image, a checked number 1, a choice its first)."""
    from utils.cli import OUTPUT_DESTS, Check

    extra: list[str] = []
    for action in info.parser._actions:
        if not action.required or not action.option_strings or any(f in argv for f in action.option_strings):
            continue
        flag = max(action.option_strings, key=len)
        if action.dest in OUTPUT_DESTS:
            value = "{outdir}/required_out.png"
        elif flag in IMAGE_FLAGS:
            value = "{ok_image}"
        elif action.choices:
            value = str(next(iter(action.choices)))
        elif isinstance(action.type, Check) or action.type in (int, float):
            value = "1"
        else:
            value = "{folder}"
        extra += [flag, value]
    return extra


def run_case(cli: Cli, case: Case, files: dict, workdir: Path, monkeypatch, capsys,
             info=None) -> tuple[int | str, str]:
    """Run `main(argv)` in `workdir`; returns (exit code or the exception's name, stderr)."""
    stem = cli.name.split("[")[0]
    base = case.base if case.base is not None else CASE_ARGS.get((stem, case.label),
                                                                     BASE_ARGS.get(cli.name, BASE_ARGS.get(stem, ())))
    argv = _fill([*cli.base, *base, *case.argv], files, workdir / "outs")
    if base and base[0] in ("points", "report"):  # a subcommand's positionals go after its options
        argv = _fill([*cli.base, base[0], *case.argv[len(_sub_words(case)):], *base[1:]], files, workdir / "outs")
    argv += _fill(required_args(info, argv), files, workdir / "outs")
    monkeypatch.chdir(workdir)
    if case.patch == "readonly":
        real = tempfile.mkstemp

        def readonly(*args, **kwargs):
            if str(kwargs.get("dir", "")).startswith(str(workdir)):
                raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir"))
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", readonly)
    if case.patch == "full":
        real_usage = shutil.disk_usage
        monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=0)
                            if str(p).startswith(str(workdir)) else real_usage(p))

    def alarm(*_):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(120)  # a case that is not refused would otherwise run a whole training or server
    capsys.readouterr()
    from utils.errors import cli_errors

    try:
        with cli_errors(cli.name):  # what `python script.py` runs (test_every_script_has_an_error_boundary)
            cli.main()(argv)
        code: int | str = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except _Timeout:
        code = "still running after 120 s (not refused)"
    except Exception as err:  # noqa: BLE001 - reported as the failure of the case
        code = f"raised {type(err).__name__}: {' '.join(str(err).split())[:200]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        monkeypatch.undo()
    return code, capsys.readouterr().err


def _sub_words(case: Case) -> tuple[str, ...]:
    """The subcommand words at the start of a case's argv ('report' for user_study's --out cases)."""
    return tuple(w for w in case.argv[:1] if w in ("points", "voxels", "report", "serve"))


def _expected(fragment: str, files: dict) -> str:
    """'{name:kind}' -> the file's name or its stem ('a|b': either)."""
    if fragment.startswith("{name:"):
        path = Path(str(files[fragment[6:-1]]))
        return f"{path.name}|{path.stem}|{path}"
    return fragment


def _snapshot(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def normalise(text: str, files: dict, workdir: Path) -> str:
    text = text.replace(str(workdir), "<work>").replace(str(files["folder"]), "<files>")
    text = re.sub(r"drew seed \d+", "drew seed N", text)
    # the registry's whole list of names changes with every model added: the doc shows where it goes
    return re.sub(r"(choose from: )((?:[\w.\-]+, ){6,}[\w.\-]+)", r"\1<every registered name>", text)


def check_case(cli, case, files, tmp_path, monkeypatch, capsys, messages, info=None) -> str | None:
    """None when the case is handled as promised, else what went wrong."""
    work = tmp_path / re.sub(r"\W+", "_", f"{case.family}_{case.label}")[:80]
    work.mkdir()
    before_files, before_work = _snapshot(files["folder"]), _snapshot(work)
    code, err = run_case(cli, case, files, work, monkeypatch, capsys, info)
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    lines = err.splitlines()
    if len(lines) != 1 or not err.endswith("\n"):
        problems.append(f"{len(lines)} stderr lines")
    if "Traceback" in err:
        problems.append("a traceback")
    if lines and ": error: " not in lines[-1]:
        problems.append("no 'error:' line")
    wanted = [_expected(f, files) for f in case.fragments]
    missing = [f for f in wanted if not any(alt in err for alt in f.split("|"))]
    if missing:
        problems.append(f"message lacks {missing}")
    left = sorted(str(p.relative_to(tmp_path)) for p in _snapshot(work) - before_work)
    if left:
        problems.append(f"left {left[:3]}")
    if (files["folder"] / PWNED).exists() or (work / PWNED).exists():
        problems.append("a malicious payload ran")
    if _snapshot(files["folder"]) != before_files:
        problems.append("changed the input files")
    messages[(cli.name, case.family, case.label)] = normalise(lines[-1] if lines else "", files, work)
    if problems:
        return f"{case.label}: {', '.join(problems)}: {err.strip()[-300:]!r}"
    return None


FAST = {("generate_image", "options"), ("generate_image", "counts"), ("generate_image", "outputs"),
        ("generate_image", "names"), ("train_gan", "options"), ("train_gan", "outputs"), ("train_gan", "names"),
        ("translate_image", "outputs"), ("translate_image", "names"), ("fid_score", "options"),
        ("generate_3d[gaussian_splatting]", "outputs"), ("train_3d[gaussian_splatting]", "names"),
        ("generate_image", "files"), ("translate_image", "files"), ("generate_3d[gaussian_splatting]", "files")}
"""The representative subset in the default suite (every family, the landed CLIs of each kind); the rest of
the matrix (every CLI x every family: tens of minutes on 2 shared cores) is marked slow: `-m slow`."""


def _matrix():
    for cli in CLIS:
        for family in FAMILIES:
            marks = () if (cli.name, family) in FAST else (pytest.mark.slow,)
            yield pytest.param(cli, family, marks=marks, id=f"{cli.name}-{family}")


@pytest.mark.parametrize("cli, family", list(_matrix()))
def test_bad_input_matrix(cli, family, bad_files, tmp_path, monkeypatch, capsys, messages):
    info = captured_parser(cli, monkeypatch)
    cases = FAMILIES[family](cli, info)
    failures = [f for case in cases if (f := check_case(cli, case, bad_files, tmp_path, monkeypatch, capsys,
                                                        messages, info))]
    RAN.add((cli.name, family))
    assert not failures, f"{cli.name}: {len(failures)} of {len(cases)} {family} cases:\n" + "\n".join(failures)
    doc_rows = DOC.read_text(encoding="utf-8") if DOC.exists() and not WRITE_DOC else None
    if doc_rows is not None:
        for (name, fam, label), message in messages.items():
            if name == cli.name and fam == family:
                assert _row(name, fam, label, message) in doc_rows, (
                    f"docs/errors.md lacks the row of {name} '{label}' (regenerate it: CVGEN_WRITE_ERRORS_DOC=1 "
                    f"python -m pytest -q tests/test_bad_input.py)")


def test_every_family_covers_the_clis_it_should():
    """The discovery finds the command lines (a broken discovery would make the matrix vacuous)."""
    names = {c.name for c in CLIS}
    assert {"generate_image", "translate_image", "train_gan", "fid_score", "train_3d[gaussian_splatting]",
            "generate_3d[gaussian_splatting]"} <= names, names


SCRIPT_MAIN = re.compile(r"^if __name__ == .__main__.:", re.M)


@pytest.mark.parametrize("cli", sorted({c.module for c in CLIS}))
def test_every_script_has_an_error_boundary(cli):
    """`python script.py` runs main inside utils.errors.cli_errors: main is decorated or wrapped, or the
    script's __main__ block wraps it (the matrix above runs main(argv) inside one, as a process would)."""
    text = (ROOT / (cli.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    main_at = text.find("\ndef main(")
    boundary = (re.search(r"@cli_errors\(", text[max(0, main_at - 200):main_at + 1]) is not None
                or "with cli_errors(" in text)
    assert boundary, f"{cli}: run main inside utils.errors.cli_errors (docs/CONVENTIONS.md, 'Bad input')"
    assert SCRIPT_MAIN.search(text), f"{cli}: no `if __name__ == \"__main__\":` block"


# -- a few real processes: the exit code and stderr a shell sees ---------------------------------------

REAL = [
    ("inference/generate_image.py", ["--seed", "99999999999999999999"], "--seed"),
    ("inference/generate_image.py", ["--weights", "{evil_pt}"], "safe load refuses"),
    ("inference/generate_image.py", ["--out", "{file_in_the_way}/x.png"], "is a file"),
    ("train/train_gan.py", ["--out", "{file_in_the_way}/run", "--steps", "1"], "is a file"),
    ("inference/generate_3d.py", ["--ply", "{random_bytes}"], "cannot read"),
    ("inference/translate_image.py", ["--preset", "tiny", "--input", "{images_with_a_bad_one}"], "bad.jpg"),
]


@pytest.mark.parametrize("script, argv, fragment", [
    pytest.param(*case, marks=() if i < 2 else (pytest.mark.slow,), id=f"{case[0].split('/')[-1]} {case[1][0]}")
    for i, case in enumerate(REAL)])
def test_real_processes(script, argv, fragment, bad_files, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(bad_files["ok_image"], folder / "a.png")
    shutil.copy(bad_files["truncated_jpeg"], folder / "bad.jpg")
    table = {**{k: str(v) for k, v in bad_files.items()}, "images_with_a_bad_one": str(folder)}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    res = subprocess.run([sys.executable, str(ROOT / script), *[a.format(**table) for a in argv]], cwd=cwd,
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr and fragment in res.stderr, res.stderr
    assert not list(cwd.rglob("*")) and not (bad_files["folder"] / PWNED).exists()


# -- docs/errors.md ------------------------------------------------------------------------------------

def _row(cli: str, family: str, label: str, message: str) -> str:
    cell = message.replace("|", "\\|")
    return f"| `{cli}` | {family} | `{label}` | {cell} |"


ROW = re.compile(r"^\| `(?P<cli>[^`]+)` \| (?P<family>\w+) \| `(?P<label>[^`]+)` \| (?P<message>.*) \|$")


def doc_messages(text: str) -> dict:
    """The (cli, family, label) -> message rows of docs/errors.md."""
    found = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if m:
            found[(m["cli"], m["family"], m["label"])] = m["message"].replace("\\|", "|")
    return found


def render_doc(messages: dict) -> str:
    from utils.cli import CAPS

    lines = ["# Bad input: every case and its message", "",
             "<!-- generated by tests/test_bad_input.py: CVGEN_WRITE_ERRORS_DOC=1 python -m pytest -q "
             "tests/test_bad_input.py -->", "",
             "Every command line answers a user mistake with one line on stderr (`prog: error: what: why: what to do`)"
             " and exit code 2, writes nothing, and shows no traceback unless `--debug` is given. The cases below are "
             "generated from each script's parser by `tests/test_bad_input.py` and run on every test run; "
             "`tests/test_bad_input_facade.py` runs the same through `models.generate` / `models.load`, where each "
             "raises `utils.errors.UserError`. Paths are shown as `<files>` (the bad inputs) and `<work>` (the "
             "working folder).", "",
             "Where each case is handled: option values by their name in `utils/cli.py` (`RULES`, before anything "
             "loads); caps per modality in `utils/cli.py` (`CAPS`: " +
             "; ".join(f"{m}: " + ", ".join(f"{k} {v}" for k, v in c.items()) for m, c in CAPS.items()) +
             "; `--force` or `--max-*` lift them); output paths in `utils/io.py` (`check_output_path`); files "
             "in `utils/weights/` (safe loading, `check_finite`) and `utils/data/image_folder.py` (`check_images`);"
             " everything else that a user's input or machine raises (file-system errors, undecodable files, "
             "numbers out of range, out of memory) in `utils/errors.py` (`as_user_error`, the boundary "
             "`cli_errors`).", "",
             "The choices every script shares (the API for a new script: docs/CONVENTIONS.md, 'Bad input'):", "",
             "- `--seed -1` draws a random seed and prints it (`--seed -1: drew seed N (pass --seed N to repeat this "
             "run)`); other seeds lie in 0..2**63-1. In Python (`models.generate`) -1 is refused: pass a seed.",
             "- Counts and sizes above their modality's cap are refused before loading; `--force` lifts every cap, "
             "`--max-images`/`--max-frames`/`--max-steps`/`--max-size N` one.",
             "- A training folder with unreadable images trains on the rest: every file is decoded when the dataset "
             "is made, and one warning line counts and names the skipped ones (`skipped 2 of 6 images ...`); a "
             "folder of which none decodes is refused. Inputs of inference scripts (`--input`, `--image`...) are "
             "refused instead, naming the first bad file, before any weights load.",
             "- A fresh training run refuses an `--out` that holds another run (`--resume` continues it, "
             "`--overwrite` deletes that run's own files, nothing else); stale `.tmp` files of killed writes are "
             "removed at the start; a resumed run trims `log.jsonl` and TensorBoard past its step.",
             "- Weights with NaN/Inf are refused at load naming the first bad tensor; a NaN or one-flat-value output "
             "is refused instead of written.", ""]
    by_cli: dict[str, list] = {}
    for (cli, family, label), message in sorted(messages.items()):
        by_cli.setdefault(cli, []).append((family, label, message))
    for cli, rows in by_cli.items():
        lines += [f"## {cli}", "", "| command line | family | case | message |", "|---|---|---|---|"]
        lines += [_row(cli, family, label, message) for family, label, message in rows]
        lines.append("")
    return "\n".join(lines)


def test_errors_doc_lists_every_case(messages):
    """Runs after the matrix (file order): with CVGEN_WRITE_ERRORS_DOC=1 it writes docs/errors.md from the
    messages of a full run; else the matrix cases already checked their rows, and this checks the doc
    holds no row of a case that is gone."""
    if not messages:
        pytest.fail("run the matrix first (this test reads its messages): python -m pytest tests/test_bad_input.py")
    expected = {(c.name, f) for c in CLIS for f in FAMILIES}
    if WRITE_DOC:  # the (cli, family) groups that ran replace their rows; the others' rows are kept
        old = doc_messages(DOC.read_text(encoding="utf-8")) if DOC.exists() else {}
        kept = {k: m for k, m in old.items() if (k[0], k[1]) not in RAN and (k[0], k[1]) in expected}
        DOC.write_text(render_doc({**kept, **messages}), encoding="utf-8")
    rows = doc_messages(DOC.read_text(encoding="utf-8"))
    stale = {(c, f) for c, f, _ in rows} - expected
    assert not stale, f"docs/errors.md has rows of command lines or families that are gone: {sorted(stale)[:5]}"
    for group in RAN:  # every group that ran: its rows are exactly its cases
        assert {k for k in rows if k[:2] == group} == {k for k in messages if k[:2] == group}, group
