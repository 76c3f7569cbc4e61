"""utils.data.binvox: our files read back identically and agree with the binvox PyPI package both ways."""
from __future__ import annotations

import numpy as np
import pytest

import binvox as binvox_pkg
from utils.data.binvox import decode_runs, encode_runs, read_binvox, write_binvox
from utils.errors import UserError


def _grid(shape=(16, 16, 16), seed=0):
    rng = np.random.default_rng(seed)
    g = rng.random(shape) < 0.3
    g[:, :, : shape[2] // 2] = True  # long runs, split at 255
    return g


def test_roundtrip_is_identical_with_header(tmp_path):
    g = _grid((12, 7, 5))
    write_binvox(tmp_path / "a.binvox", g, translate=(-1.0, -0.5, 0.25), scale=2.5)
    back = read_binvox(tmp_path / "a.binvox")
    assert back.data.dtype == bool and back.data.shape == (12, 7, 5) and np.array_equal(back.data, g)
    assert back.translate == (-1.0, -0.5, 0.25) and back.scale == 2.5


def test_runs_split_at_255_and_decode():
    flat = np.zeros(600, dtype=bool)
    flat[300:] = True
    raw = encode_runs(flat)
    pairs = np.frombuffer(raw, np.uint8).reshape(-1, 2)
    assert pairs[:, 1].max() <= 255 and pairs[:, 1].sum() == 600 and pairs.tolist()[:2] == [[0, 255], [0, 45]]
    assert np.array_equal(decode_runs(raw, 600), flat)


def test_the_binvox_package_reads_our_file(tmp_path):
    g = _grid()
    write_binvox(tmp_path / "ours.binvox", g, translate=(0.1, 0.2, 0.3), scale=1.5)
    ref = binvox_pkg.Binvox.read(str(tmp_path / "ours.binvox"), "dense")  # fix_coords: indexed [x, y, z]
    assert np.array_equal(ref.data, g)
    assert list(ref.translate) == [0.1, 0.2, 0.3] and ref.scale == 1.5 and list(ref.dims) == [16, 16, 16]


def test_we_read_a_file_the_binvox_package_writes(tmp_path):
    g = _grid(seed=3)
    binvox_pkg.Binvox(g, [16, 16, 16], [-1.0, -1.0, -1.0], 2.0, "xyz", "dense").write(str(tmp_path / "ref.binvox"))
    ours = read_binvox(tmp_path / "ref.binvox")
    assert np.array_equal(ours.data, g) and ours.translate == (-1.0, -1.0, -1.0) and ours.scale == 2.0
    # and byte for byte the same file when we write it back
    write_binvox(tmp_path / "ours.binvox", ours.data, ours.translate, ours.scale)
    ref_bytes, our_bytes = (tmp_path / "ref.binvox").read_bytes(), (tmp_path / "ours.binvox").read_bytes()
    strip = lambda b: b.split(b"data\n", 1)[1]  # noqa: E731 - the headers differ only in number formatting
    assert np.array_equal(decode_runs(strip(ref_bytes), 16 ** 3), decode_runs(strip(our_bytes), 16 ** 3))


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[:-3], "corrupt"),                           # truncated runs
    (lambda b: b.replace(b"#binvox 1", b"#voxels 1"), "not a binvox file"),
    (lambda b: b.replace(b"dim 16 16 16", b"dim 16 x 16"), "bad 'dim' line"),
    (lambda b: b.replace(b"scale", b"scal"), "'scale' line"),
    (lambda b: b + b"\x07", "odd number of bytes"),
])
def test_corrupt_files_are_one_line_errors(tmp_path, damage, words):
    write_binvox(tmp_path / "a.binvox", _grid())
    bad = tmp_path / "bad.binvox"
    bad.write_bytes(damage((tmp_path / "a.binvox").read_bytes()))
    with pytest.raises(UserError, match=words) as err:
        read_binvox(bad)
    assert "\n" not in str(err.value) and "bad.binvox" in str(err.value)


def test_a_value_other_than_0_or_1_is_corrupt(tmp_path):
    write_binvox(tmp_path / "a.binvox", np.zeros((4, 4, 4), bool))
    raw = (tmp_path / "a.binvox").read_bytes()
    head, body = raw.split(b"data\n", 1)
    (tmp_path / "b.binvox").write_bytes(head + b"data\n" + bytes([2]) + body[1:])
    with pytest.raises(UserError, match="value 2"):
        read_binvox(tmp_path / "b.binvox")
