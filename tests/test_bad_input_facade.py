"""The bad-input matrix through the Python facade: `models.generate` / `models.load` raise `UserError` (one
line) and never a raw torch, PIL or OS exception; numerical sanity; the facade builds once per key."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

import models
from tests.helpers.bad_files import PWNED, WEIGHT_KINDS, make_bad_files
from utils.errors import UserError


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_files")
    return {**make_bad_files(folder), "folder": folder}


@pytest.fixture(autouse=True)
def _cold_cache():
    models.clear_cache()
    yield
    models.clear_cache()


def _user_error(call) -> str:
    with pytest.raises(Exception) as exc:
        call()
    assert isinstance(exc.value, UserError), f"{type(exc.value).__name__}: {exc.value}"
    message = str(exc.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


NAMES = [
    ((None, "dcgan"), {}, "modality must be a name"),
    (("gan", None), {}, "model must be a name"),
    ((3, "dcgan"), {}, "modality must be a name"),
    (("gann", "dcgan"), {}, "unknown modality 'gann'"),
    (("gan", "no_such_model"), {}, "unknown gan model 'no_such_model'"),
    (("image", "dcgan"), {}, "is a gan model"),
    (("gan", "dcgan"), {"preset": "no_such_preset"}, "no preset 'no_such_preset'"),
    (("gan", "dcgan"), {"preset": 7}, "preset must be a name"),
    (("gan", "dcgan"), {"weights": 7}, "weights must be a path"),
    (("gan", "dcgan"), {"device": 0}, "device must be a name"),
    (("gan", "dcgan"), {"device": "cuda:9"}, "cuda:9"),
    (("gan", "dcgan"), {"dtype": "fp12"}, "unknown dtype"),
]


@pytest.mark.parametrize("args, kwargs, fragment", NAMES, ids=[f"{a}-{k}" for a, k, _ in NAMES])
def test_names_and_types(args, kwargs, fragment):
    assert fragment in _user_error(lambda: models.generate(*args, **kwargs))


VALUES = [
    ({"seed": 2**64}, "seed must be"),
    ({"seed": 99999999999999999999}, "seed must be"),
    ({"seed": -1}, "random.randrange"),
    ({"seed": -5}, "seed must be"),
    ({"seed": "abc"}, "got str"),
    ({"seed": 1.5}, "got float"),
    ({"num_images": 0}, "num_images must be"),
    ({"num_images": 2.5}, "got float"),
    ({"num_images": "3"}, "got str"),
    ({"height": 0}, "height must be"),
    ({"width": -32}, "width must be"),
    ({"no_such_argument": 1}, "takes no argument 'no_such_argument'"),
]


@pytest.mark.parametrize("kwargs, fragment", VALUES, ids=[str(k) for k, _ in VALUES])
def test_call_values_of_a_gan(kwargs, fragment):
    assert fragment in _user_error(lambda: models.generate("gan", "dcgan", preset="tiny", **kwargs))


DIFFUSION_VALUES = [
    ({"height": 0}, "height must be"), ({"steps": 0}, "steps must be"), ({"guidance": -5.0}, "guidance scale"),
    ({"strength": 2.0}, "strength in (0, 1]"), ({"num_images": 0}, "num_images must be"),
    ({"height": 40}, "multiples of 16"),
]


@pytest.mark.parametrize("kwargs, fragment", DIFFUSION_VALUES, ids=[str(k) for k, _ in DIFFUSION_VALUES])
def test_call_values_of_a_diffusion_model(kwargs, fragment):
    assert fragment in _user_error(lambda: models.generate("image", "flux", preset="tiny", prompt="a fox",
                                                           **{"steps": 1, **kwargs}))


@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_bad_weights_files(kind, bad):
    _user_error(lambda: models.generate("gan", "dcgan", weights=str(bad[kind])))
    assert not (bad["folder"] / PWNED).exists()


@pytest.mark.parametrize("kind", ["missing", "empty_image", "text_as_image", "random_image", "truncated_jpeg"])
def test_bad_input_images(kind, bad):
    _user_error(lambda: models.generate("image", "flux", preset="tiny", prompt="a fox", steps=1,
                                        image=str(bad[kind]), strength=0.5))


def test_out_of_memory_is_a_user_error(monkeypatch):
    pipe = models.load("gan", "dcgan", preset="tiny")

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(type(pipe), "__call__", lambda self, **kw: oom())
    assert "out of memory" in _user_error(lambda: models.generate("gan", "dcgan", preset="tiny", num_images=4))


# -- numerical sanity -----------------------------------------------------------------------------

def _dcgan_file(tmp_path, fill) -> str:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src = str(Path(__file__).resolve().parents[1] / "models" / "gan" / "dcgan" / "weights" / "digits.safetensors")
    with safe_open(src, "pt") as f:
        meta = f.metadata()
    sd = {k: fill(k, v) for k, v in load_file(src).items()}
    path = tmp_path / "broken.safetensors"
    save_file(sd, str(path), metadata=meta)
    return str(path)


def test_nan_weights_are_refused_at_load_naming_the_first_bad_tensor(tmp_path):
    """(Before: the NaN file loaded and a blank 98-byte PNG was written, exit 0.)"""
    broken = ("main.4.weight", "main.7.weight")
    path = _dcgan_file(tmp_path, lambda k, v: v.clone().fill_(float("nan")) if k in broken else v)
    message = _user_error(lambda: models.load("gan", "dcgan", weights=path))
    assert "NaN" in message and "'main.4.weight'" in message, message
    inf = _dcgan_file(tmp_path, lambda k, v: v.clone().fill_(float("inf")) if v.is_floating_point() else v)
    assert "holds Inf values" in _user_error(lambda: models.load("gan", "dcgan", weights=inf))


def test_nan_weights_through_the_command_line_write_nothing(tmp_path, monkeypatch, capsys):
    from inference.generate_image import main

    path = _dcgan_file(tmp_path, lambda k, v: torch.full_like(v, float("nan")) if v.is_floating_point() else v)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--weights", path, "--out", "digits.png"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "NaN" in err, err
    assert not (tmp_path / "digits.png").exists()


def test_a_flat_output_is_refused_instead_of_a_blank_file(tmp_path, monkeypatch, capsys):
    """All-zero weights give one flat grey everywhere: an error, not a blank PNG."""
    from inference.generate_image import main

    path = _dcgan_file(tmp_path, lambda k, v: torch.zeros_like(v) if v.is_floating_point() else v)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--weights", path, "--out", "digits.png"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "one flat value" in err, err
    assert not (tmp_path / "digits.png").exists()
    with pytest.raises(UserError, match="NaN"):  # a NaN result never even becomes an output
        models.get_spec("gan", "dcgan").pipeline_class().output(torch.full((2, 1, 4, 4), float("nan")))
    assert not list(tmp_path.glob("*.png"))


# -- sizes and counts that failed silently before -----------------------------------------------------

def test_zero_sizes_are_refused_not_replaced_by_the_default(tmp_path, monkeypatch, capsys):
    """(Before: --height 0 / --width 0 ran at the default size, exit 0.)"""
    from inference.generate_image import main
    from utils.diffusion.inputs import output_size

    with pytest.raises(UserError, match="got 0x64"):
        output_size(0, 64, None, 16, 1024, "flux")
    monkeypatch.chdir(tmp_path)
    for flag in ("--height", "--width"):
        with pytest.raises(SystemExit) as exc:
            main(["--model", "flux", "--preset", "tiny", flag, "0", "--prompt", "a", "--steps", "1"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and f"{flag}: must be at least 1" in err, err
    assert not list(tmp_path.rglob("*.png"))


def test_huge_counts_are_refused_unless_lifted(tmp_path, monkeypatch, capsys):
    """(Before: --num-images 100000 on DCGAN wrote a 60 MB grid with 2.7 GB resident.)"""
    from inference.generate_image import main

    monkeypatch.chdir(tmp_path)
    for argv, fragment in ((["--num-images", "100000"], "--max-images 100000 (or --force)"),
                           (["--model", "flux", "--preset", "tiny", "--num-images", "17"], "cap of 16"),
                           (["--model", "flux", "--preset", "tiny", "--steps", "5000"], "--max-steps 5000")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and fragment in err, err
    main(["--num-images", "1100", "--max-images", "1100", "--out", "many.png"])
    assert (tmp_path / "many.png").is_file()


# -- one build per key, and tiny weights that do not depend on the global RNG -------------------------

def test_threads_on_a_cold_cache_build_one_pipeline(monkeypatch):
    cls = models.get_spec("gan", "dcgan").pipeline_class()
    builds = []
    original = cls.from_pretrained.__func__

    def counted(klass, *args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.3)  # every other thread arrives while the first one builds
        return original(klass, *args, **kwargs)

    monkeypatch.setattr(cls, "from_pretrained", classmethod(counted))
    alone = models.generate("gan", "dcgan", preset="tiny", seed=3, num_images=4).pixels
    models.clear_cache()
    builds.clear()
    results: dict[int, torch.Tensor] = {}
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        pipe = models.load("gan", "dcgan", preset="tiny")
        results[i] = (id(pipe), pipe(seed=3, num_images=4).pixels)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(builds) == 1, builds
    assert len({pid for pid, _ in results.values()}) == 1
    assert all(torch.equal(px, alone) for _, px in results.values())


def test_tiny_weights_do_not_depend_on_the_global_rng():
    """Random tiny weights come from a generator of their own: the same whatever the global RNG is doing."""
    reference = models.load("gan", "wgan_gp", preset="tiny", cache=False)(seed=1, num_images=2).pixels
    stop = threading.Event()

    def noise() -> None:  # another thread drawing from the global RNG all along
        while not stop.is_set():
            torch.randn(64)

    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    spinner = threading.Thread(target=noise)
    spinner.start()
    try:
        built = [models.load(m, n, preset="tiny", cache=False) for m, n in
                 (("gan", "wgan_gp"), ("gan", "dcgan"), ("gan", "wgan_gp"))]
    finally:
        stop.set()
        spinner.join()
    assert torch.equal(built[0](seed=1, num_images=2).pixels, reference)
    assert torch.equal(built[2](seed=1, num_images=2).pixels, reference)
    torch.random.set_rng_state(before)
    torch.manual_seed(1234)
    models.load("image", "flux", preset="tiny", cache=False)
    assert torch.equal(torch.randn(3), (torch.manual_seed(1234), torch.randn(3))[1])  # the caller's RNG untouched
