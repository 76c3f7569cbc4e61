"""Spectral normalisation (Miyato et al. 2018) over a whole network."""
from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def apply_spectral_norm(module: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Wrap the weight of every conv, linear and embedding layer with a spectral norm; BN is removed
    from nothing (callers build discriminators without it when SN replaces it)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)) and not hasattr(m, "parametrizations"):
            spectral_norm(m, n_power_iterations=n_power_iterations)
    return module
