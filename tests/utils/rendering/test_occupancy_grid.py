"""Occupancy grid: on a known scene it skips empty space without dropping occupied samples; early
stopping removes samples behind an opaque surface; cascades, cone steps, updates and invisible cells."""
from __future__ import annotations

import math

import pytest
import torch

from utils.errors import UserError
from utils.rendering.cameras import orbit_cameras
from utils.rendering.occupancy_grid import OccupancyGrid
from utils.rendering.rays import generate_rays
from utils.rendering.volume_rendering import volume_render

CENTRE, RADIUS = torch.tensor([0.2, -0.1, 0.0]), 0.35


def sphere_density(x: torch.Tensor) -> torch.Tensor:
    return torch.where((x - CENTRE).norm(dim=-1) < RADIUS, torch.full_like(x[..., 0], 30.0), torch.zeros_like(x[..., 0]))


def _rays(n_cams=2, size=12):
    cams = orbit_cameras(n_cams, 3.0, size, size, fov_x=math.radians(40), elevation=math.radians(20))
    return generate_rays(cams)


def _known_grid(res=32):
    """The grid of the known scene: a cell is occupied when the sphere reaches into it."""
    grid = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=res)
    lo = grid.cell_centers() - 1.0 / res
    hi = lo + 2.0 / res
    nearest = torch.maximum(torch.minimum(CENTRE, hi), lo)
    grid.binaries = ((nearest - CENTRE).norm(dim=-1) < RADIUS).reshape(grid.binaries.shape)
    return grid


def test_grid_skips_empty_space_and_keeps_every_occupied_sample():
    grid = _known_grid()
    occupied = grid.binaries.float().mean()
    assert 0.01 < occupied < 0.1  # the sphere fills 0.18 / 8 of the box, plus a shell of cut cells
    rays = _rays()
    step = 2 * math.sqrt(3) / 256
    ri, ts, te = grid.sample(rays.origins, rays.directions, step_size=step)
    # the reference: the same lattice of steps through the box, with nothing skipped
    full = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=32)
    fri, fts, fte = full.sample(rays.origins, rays.directions, step_size=step)
    assert len(ts) < 0.2 * len(fts)
    mids = rays.origins[fri] + rays.directions[fri] * ((fts + fte) / 2)[:, None]
    in_sphere = sphere_density(mids) > 0
    kept = set(zip(ri.tolist(), ts.tolist()))
    wanted = set(zip(fri[in_sphere].tolist(), fts[in_sphere].tolist()))
    assert wanted and wanted <= kept  # no occupied sample is dropped
    # and the image is the same with and without skipping
    def render(i, s, e):
        x = rays.origins[i] + rays.directions[i] * ((s + e) / 2)[:, None]
        return volume_render(s, e, sphere_density(x), torch.ones(len(s), 3), i, len(rays)).opacity

    assert (render(ri, ts, te) - render(fri, fts, fte)).abs().max() < 1e-6
    assert 0.05 < float(render(ri, ts, te).mean()) < 0.9


def test_early_stop_removes_samples_behind_the_surface():
    grid = _known_grid()
    rays = _rays()
    step = 2 * math.sqrt(3) / 256
    ri, ts, te = grid.sample(rays.origins, rays.directions, step_size=step)

    def sigma_fn(s, e, i):  # a dense sphere: opaque within a tenth of its radius
        return 10 * sphere_density(rays.origins[i] + rays.directions[i] * ((s + e) / 2)[:, None])

    ri2, ts2, te2 = grid.sample(rays.origins, rays.directions, step_size=step, sigma_fn=sigma_fn, early_stop_eps=1e-4)
    assert len(ts2) < 0.4 * len(ts)
    x = rays.origins[ri2] + rays.directions[ri2] * ((ts2 + te2) / 2)[:, None]
    before = volume_render(ts, te, sigma_fn(ts, te, ri), torch.ones(len(ts), 3), ri, len(rays)).opacity
    after = volume_render(ts2, te2, 10 * sphere_density(x), torch.ones(len(ts2), 3), ri2, len(rays)).opacity
    assert (before - after).abs().max() < 2e-4
    # samples come packed: contiguous per ray, front to back
    assert (ri2.diff() >= 0).all() and ((ri2.diff() > 0) | (ts2.diff() > 0)).all()


def test_cascade_levels_cover_a_box_twice_as_large_each():
    grid = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=8, levels=3)
    assert torch.allclose(grid.aabbs[2], torch.tensor([-4.0, -4.0, -4.0, 4.0, 4.0, 4.0]))
    grid.binaries.zero_()
    grid.binaries[1, 7, 4, 4] = True  # level 1 covers [-2, 2]: cell 7 along x is x in [1.5, 2]
    pts = torch.tensor([[1.75, 0.1, 0.1], [0.9, 0.1, 0.1], [3.0, 0.1, 0.1], [9.0, 0.0, 0.0]])
    assert grid.occupied(pts).tolist() == [True, False, False, False]


def test_cone_angle_steps_grow_with_distance():
    grid = OccupancyGrid([-10.0, -10.0, -10.0, 10.0, 10.0, 10.0], resolution=4)
    o = torch.tensor([[-9.9, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    _, ts, te = grid.sample(o, d, step_size=0.01, cone_angle=0.01)
    dt = te - ts
    # a fixed step until t = step / cone = 1, then dt = t * cone
    assert torch.allclose(dt[ts < 0.99], torch.full_like(dt[ts < 0.99], 0.01), atol=1e-5)
    far = (ts > 2.0) & (te < te.max())  # (the last step is cut at the box)
    assert torch.allclose(dt[far], ts[far] * 0.01, rtol=1e-3)
    assert abs(float(te[-1]) - 19.9) < 0.5 and torch.allclose(ts[1:], te[:-1], atol=1e-5)


def test_updates_learn_the_known_grid():
    grid = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=16)
    g = torch.Generator().manual_seed(0)
    for step in range(0, 20 * 16, 16):  # one random point per cell and refresh, a moving maximum over them
        grid.update(step, lambda x: sphere_density(x) * 0.01, occ_thre=0.01, warmup_steps=10_000, generator=g)
    truth = _known_grid(16).binaries
    assert not (grid.binaries & ~truth).any()  # never a cell the sphere does not reach
    assert (grid.binaries & truth).sum() > 0.7 * truth.sum()  # and most it does (cells it grazes may wait)


def test_update_keeps_a_moving_maximum_and_invisible_cells_stay_empty():
    grid = OccupancyGrid([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0], resolution=8)
    cams = orbit_cameras(3, 3.0, 16, 16, fov_x=math.radians(20), elevation=0.0)
    grid.mark_invisible_cells(cams.camtoworlds, cams.Ks, 16, 16)
    hidden = grid.occs < 0
    assert 0 < int(hidden.sum()) < len(grid.occs)  # a narrow field of view leaves corners unseen
    g = torch.Generator().manual_seed(0)
    assert grid.update(0, lambda x: torch.full_like(x[:, 0], 0.5), warmup_steps=10, generator=g)
    assert torch.all(grid.occs[~hidden] == 0.5) and torch.all(grid.occs[hidden] == -1)
    assert not grid.update(3, lambda x: torch.zeros_like(x[:, 0]), update_every=16)
    grid.update(16, lambda x: torch.zeros_like(x[:, 0]), warmup_steps=100, generator=g)
    assert torch.allclose(grid.occs[~hidden], torch.full_like(grid.occs[~hidden], 0.5 * 0.95))
    assert not grid.binaries.reshape(-1)[hidden].any()
    with pytest.raises(UserError, match="max > min"):
        OccupancyGrid([1.0, 0, 0, 0, 1, 1])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nerfacc's traverse_grids)")
def test_nerfacc_traversal_renders_the_same_sphere():
    grid = _known_grid().cuda()
    rays = _rays().to("cuda")
    step = 2 * math.sqrt(3) / 512

    def render(backend):
        ri, ts, te = grid.sample(rays.origins, rays.directions, step_size=step, backend=backend)
        x = rays.origins[ri] + rays.directions[ri] * ((ts + te) / 2)[:, None]
        return volume_render(ts, te, sphere_density(x), torch.ones(len(ts), 3, device="cuda"), ri, len(rays)).opacity

    # the two march different lattices, so pixels agree to the step's share of the slab, not bit for bit
    assert (render("torch") - render("nerfacc")).abs().mean() < 2e-2
