"""benchmarks/get3d.py at its toy size: the generator, pipeline and rasterizer rows are well formed; without
CUDA there is no nvdiffrast reference and the table says so; bad sizes exit 2."""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks import get3d


def test_toy_run_prints_well_formed_rows(capsys):
    threads = torch.get_num_threads()
    r = get3d.main(["--toy"])
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    g, ras = r["generator"], r["raster"]
    assert g["preset"] == "tiny" and g["mesh_faces"] > 0 and g["grid_vertices"] == 9 ** 3
    assert g["meshes_per_s"] > 0 and g["shapes_per_s"] > 0 and math.isfinite(g["meshes_per_s"])
    assert ras["triangles"] > 0 and ras["ours_frames_per_s"] > 0 and (ras["views"], ras["size"]) == (2, 32)
    assert ras["nvdiffrast_frames_per_s"] is None and "n/a (nvdiffrast needs CUDA)" in out
    assert f"{g['meshes_per_s']:10.3f}" in out


def test_bad_sizes_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        get3d.main(["--size", "4", "--preset", "tiny"])
    assert err.value.code == 2
    assert "--size must be at least 8" in capsys.readouterr().err
