"""Fixtures of the metric tests: random-weight TF-Inception networks."""
from __future__ import annotations

import pytest
import torch

from utils.metrics.inception import FIDInceptionV3


# -- random-weight TF-Inception networks (FID / KID / IS tests) ------------------------------------

def random_inception(seed: int = 0, resize: str = "none") -> FIDInceptionV3:
    """Random weights that keep the input's information alive through the 20 layers (variance-preserving
    convolutions), with batch-norm statistics spread out so every buffer matters."""
    torch.manual_seed(seed)
    model = FIDInceptionV3(resize=resize)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.8, 1.2)
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.1)
    model.fc.weight.data.normal_(0, 0.05)
    model.fc.bias.data.normal_(0, 0.5)
    return model


def pytorch_fid_inception(monkeypatch, state_dict, resize_input: bool = False):
    """pytorch_fid's InceptionV3 (use_fid_inception=True) with `state_dict` in place of the download."""
    import pytorch_fid.inception as pfi

    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state_dict)
    return pfi.InceptionV3([3], resize_input=resize_input, normalize_input=True, use_fid_inception=True).eval()


@pytest.fixture(scope="session")
def make_inception():
    return random_inception


@pytest.fixture
def make_pytorch_fid_inception(monkeypatch):
    return lambda state_dict, resize_input=False: pytorch_fid_inception(monkeypatch, state_dict, resize_input)
