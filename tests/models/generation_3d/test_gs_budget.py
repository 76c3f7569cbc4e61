"""CPU-aware schedules: the steps and Gaussian cap that fit a time budget, from measured step times."""
from __future__ import annotations

import math

import pytest
import torch

from models.generation_3d.gaussian_splatting import budget
from models.generation_3d.gaussian_splatting.config import get_config
from utils.data.nerf_synthetic import PosedImages
from utils.rendering.cameras import orbit_cameras


def _data(size: int = 100, n: int = 3) -> PosedImages:
    cams = orbit_cameras(n, 3.0, size, size, fov_x=math.radians(50), elevation=math.radians(20))
    return PosedImages(images=torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(0)), cameras=cams)


@pytest.fixture
def linear_cost(monkeypatch):
    """Steps cost 2 ms + 2 us per Gaussian; records the sizes timed."""
    timed = []

    def fake(model, data, **kw):
        timed.append(len(model))
        return 2e-3 + 2e-6 * len(model)

    monkeypatch.setattr(budget, "time_steps", fake)
    return timed


def test_default_cap_follows_the_image_size():
    assert budget.default_cap(100, 100) == 15_000
    assert budget.default_cap(20, 20) == 5_000 and budget.default_cap(800, 800) == 200_000


def test_steps_fill_the_budget_at_the_measured_speed(linear_cost):
    plan = budget.plan_for_budget(get_config("default"), _data(), budget_min=3.0)
    assert plan.cap == 15_000 and plan.init_points == 5_000 and linear_cost == [15_000, 5_000]
    per_step = 0.25 * (2e-3 + 2e-6 * 5_000) + 0.75 * (2e-3 + 2e-6 * 15_000)
    assert plan.steps == math.floor(180 / per_step)
    assert abs(plan.expected_s - 180) < per_step


def test_a_tight_budget_shrinks_the_cap_not_the_steps_below_the_floor(linear_cost):
    plan = budget.plan_for_budget(get_config("default"), _data(), budget_min=1.0)
    # 15k Gaussians would give 60 s / 27 ms = 2,222 steps: enough; 0.5 min would not be
    plan_half = budget.plan_for_budget(get_config("default"), _data(), budget_min=0.5)
    assert plan.cap == 15_000 and plan.steps >= budget.MIN_STEPS
    assert plan_half.cap == 7_500 and plan_half.steps >= budget.MIN_STEPS


def test_the_users_cap_or_steps_are_kept(linear_cost):
    plan = budget.plan_for_budget(get_config("default"), _data(), budget_min=0.2, cap=30_000)
    assert plan.cap == 30_000 and plan.steps < budget.MIN_STEPS
    assert budget.plan_for_budget(get_config("default"), _data(), budget_min=0.2, steps=123).steps == 123
    with pytest.raises(ValueError, match="positive"):
        budget.plan_for_budget(get_config("default"), _data(), budget_min=0)


def test_time_steps_measures_a_real_step_and_leaves_the_model_alone():
    from models.generation_3d.gaussian_splatting.model import GaussianSplatting

    model = GaussianSplatting.random(get_config("tiny"), generator=torch.Generator().manual_seed(0), n=200)
    before = {k: v.detach().clone() for k, v in model.splats.items()}
    seconds = budget.time_steps(model, _data(size=24), n=2, warmup=1)
    assert 0 < seconds < 30
    assert all(torch.equal(before[k], v) for k, v in model.splats.items())
