"""The Gaussian-splatting trainer drives any `Strategy` through the protocol, in gsplat's order:
sanity check and state once; per step, pre-backward after rendering (no gradients yet),
regularization into the loss, post-backward after the optimiser step (gradients of the
projected centres kept, parameter gradients cleared, parameters moved, the step's position lr)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from models.generation_3d.gaussian_splatting.config import TrainConfig, get_config
from models.generation_3d.gaussian_splatting.strategy import Strategy, check_sanity
from models.generation_3d.gaussian_splatting.training import Trainer
from utils.data.nerf_synthetic import PosedImages
from utils.rendering.cameras import orbit_cameras


@dataclass(frozen=True)
class RecordingStrategy:
    """Does nothing to the Gaussians; writes down how it is called."""

    calls: list = field(default_factory=list)

    def scaled_to(self, steps: int) -> "RecordingStrategy":
        return self

    def initialize_state(self, scene_scale: float = 1.0) -> dict:
        self.calls.append(("init", scene_scale))
        return {"means_at_pre": None}

    def check_sanity(self, params, optimizers) -> None:
        self.calls.append(("sanity",))
        check_sanity(params, optimizers)

    def step_pre_backward(self, params, optimizers, state, step, info) -> None:
        state["means_at_pre"] = params["means"].detach().clone()
        self.calls.append(("pre", step, info["means2d"].grad is None))

    def regularization(self, params):
        self.calls.append(("reg",))
        return 0.0

    def step_post_backward(self, params, optimizers, state, step, info, lr=None) -> dict:
        moved = not torch.equal(params["means"], state["means_at_pre"])
        self.calls.append(("post", step, info["means2d"].grad is not None, params["means"].grad is None, moved, lr))
        return {"recorded": 1}


def _data(n: int = 2, size: int = 16) -> PosedImages:
    cams = orbit_cameras(n, 3.0, size, size, fov_x=math.radians(50), elevation=math.radians(20))
    return PosedImages(images=torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(0)), cameras=cams)


def test_trainer_calls_the_strategy_protocol_in_order(tmp_path):
    strategy = RecordingStrategy()
    assert isinstance(strategy, Strategy)
    cfg = replace(get_config("tiny"), init_num_points=60, init_scale=2.0, init_extent=0.5)
    t = Trainer(cfg, TrainConfig(steps=2, seed=0), strategy, _data(), None, tmp_path, torch.device("cpu"),
                tensorboard=False)
    stats = [t.train_step(0), t.train_step(1)]
    assert strategy.calls[:2] == [("sanity",), ("init", t.scene_scale)]
    assert strategy.calls[2:] == [
        ("pre", 0, True), ("reg",), ("post", 0, True, True, True, t.means_lr_at(0)),
        ("pre", 1, True), ("reg",), ("post", 1, True, True, True, t.means_lr_at(1)),
    ]
    assert all(s["recorded"] == 1 for s in stats)  # the hook's counts reach the step's statistics
