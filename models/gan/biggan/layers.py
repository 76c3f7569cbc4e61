"""BigGAN building blocks: spectrally normalised layers, class-conditional batch norm, self-attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.nn.attention import attention


class SpectralNormMixin:
    """Divides `weight` by its largest singular value, estimated by power iteration (Miyato et al. 2018).

    The singular vectors live in the buffers `u` and `v`. In training mode each forward runs
    `power_iterations` steps and updates them; in eval mode they are used as stored, so a
    checkpoint reproduces exactly the weights it was saved with. In eval mode without autograd the
    normalised weight is cached until the weight or the vectors change.
    """

    weight: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor

    def _init_spectral_norm(self, eps: float, power_iterations: int = 1) -> None:
        self.sn_eps = eps
        self.power_iterations = power_iterations
        rows, cols = self.weight.shape[0], self.weight[0].numel()
        # Random unit vectors, like torch.nn.utils.spectral_norm; a trained checkpoint replaces them.
        self.register_buffer("u", F.normalize(self.weight.new_empty(rows).normal_(), dim=0, eps=eps))
        self.register_buffer("v", F.normalize(self.weight.new_empty(cols).normal_(), dim=0, eps=eps))
        self._sn_cache: tuple[tuple, torch.Tensor] | None = None

    def sn_weight(self) -> torch.Tensor:
        w = self.weight
        w_mat = w.flatten(1)
        u, v = self.u, self.v
        if self.training and self.power_iterations > 0:
            with torch.no_grad():
                for _ in range(self.power_iterations):
                    v = F.normalize(torch.mv(w_mat.t(), u), dim=0, eps=self.sn_eps)
                    u = F.normalize(torch.mv(w_mat, v), dim=0, eps=self.sn_eps)
                self.u.copy_(u)
                self.v.copy_(v)
            # Clones: the buffers change again at the next forward, maybe before this backward.
            u, v = u.clone(), v.clone()
        elif not self.training and not torch.is_grad_enabled():
            key = (w.data_ptr(), w._version, u.data_ptr(), u._version, v.data_ptr(), v._version, w.dtype, w.device)
            if self._sn_cache is not None and self._sn_cache[0] == key:
                return self._sn_cache[1]
            weight = w / torch.dot(u, torch.mv(w_mat, v))
            self._sn_cache = (key, weight)
            return weight
        return w / torch.dot(u, torch.mv(w_mat, v))

    def sigma(self) -> torch.Tensor:
        """The current estimate of the largest singular value."""
        return torch.dot(self.u, torch.mv(self.weight.flatten(1), self.v))

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module hook: moving or casting drops the cache
        self._sn_cache = None
        return super()._apply(fn, recurse)  # type: ignore[misc]


class SNConv2d(SpectralNormMixin, nn.Conv2d):
    def __init__(self, *args, eps: float = 1e-12, power_iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(eps, power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.sn_weight(), self.bias)


class SNLinear(SpectralNormMixin, nn.Linear):
    def __init__(self, *args, eps: float = 1e-12, power_iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(eps, power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.sn_weight(), self.bias)


class SNEmbedding(SpectralNormMixin, nn.Embedding):
    def __init__(self, *args, eps: float = 1e-12, power_iterations: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_spectral_norm(eps, power_iterations)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.embedding(y, self.sn_weight())


def truncation_stats(means: torch.Tensor, variances: torch.Tensor, truncation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored batch-norm statistics for `truncation`, from the table of `n` values over [0, 1].

    The table was measured by the release at truncation 0, 1/(n-1), ..., 1. Between two entries
    the weights are those of the pytorch-pretrained-biggan port (`coef` on the lower entry,
    `1 - coef` on the upper), kept as they are because the converted checkpoints were checked with them.
    """
    step = 1.0 / (means.shape[0] - 1)
    coef, start = math.modf(truncation / step)
    start = int(start)
    if coef == 0.0:
        return means[start], variances[start]
    return (means[start] * coef + means[start + 1] * (1 - coef),
            variances[start] * coef + variances[start + 1] * (1 - coef))


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias are linear functions of the conditioning vector.

    gain = 1 + scale(c), bias = offset(c) (both spectrally normalised, no bias term). In eval mode
    the statistics come from the stored per-truncation table; in training mode from the batch.
    """

    def __init__(self, channels: int, cond_dim: int, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))
        self.scale = SNLinear(cond_dim, channels, bias=False, eps=eps)
        self.offset = SNLinear(cond_dim, channels, bias=False, eps=eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        else:
            mean, var = truncation_stats(self.running_means, self.running_vars, truncation)
        # Fold normalisation and modulation into one per-sample affine map: x * a + b.
        a = (1.0 + self.scale(cond)) * torch.rsqrt(var + self.eps)
        b = self.offset(cond) - mean * a
        return torch.addcmul(b[:, :, None, None], x, a[:, :, None, None])


class BatchNorm(nn.Module):
    """The unconditional output batch norm of the generator, with per-truncation statistics."""

    def __init__(self, channels: int, n_stats: int = 51, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_means", torch.zeros(n_stats, channels))
        self.register_buffer("running_vars", torch.ones(n_stats, channels))

    def forward(self, x: torch.Tensor, truncation: float) -> torch.Tensor:
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
        else:
            mean, var = truncation_stats(self.running_means, self.running_vars, truncation)
        a = self.weight * torch.rsqrt(var + self.eps)
        b = self.bias - mean * a
        return torch.addcmul(b[None, :, None, None], x, a[None, :, None, None])


class SelfAttention(nn.Module):
    """SAGAN self-attention: queries at full resolution, keys and values 2x max-pooled.

    out = x + gamma * W_o(softmax(q^T k) v), with q, k of C/8 channels and v of C/2 channels;
    the logits are not scaled by 1/sqrt(d), as in the release.
    """

    def __init__(self, channels: int, eps: float = 1e-12):
        super().__init__()
        self.query = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.key = SNConv2d(channels, channels // 8, 1, bias=False, eps=eps)
        self.value = SNConv2d(channels, channels // 2, 1, bias=False, eps=eps)
        self.out = SNConv2d(channels // 2, channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)[:, None]  # (B, 1, HW, C/8)
        k = F.max_pool2d(self.key(x), 2).flatten(2).transpose(1, 2)[:, None]
        v = F.max_pool2d(self.value(x), 2).flatten(2).transpose(1, 2)[:, None]
        o = attention(q, k, v, scale=1.0)[:, 0].transpose(1, 2).reshape(b, c // 2, h, w)
        return x + self.gamma * self.out(o)
