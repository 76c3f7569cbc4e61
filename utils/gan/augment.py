"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) with an ADA-style adaptive probability.

The same augmentation is applied to real and fake images before the discriminator, so the
generator is not pushed to produce augmented images. `AdaptiveAugment` tunes the probability
p from the sign of D on reals (Karras et al. 2020): r_t = E[sign(D(x))], raised when r_t > target.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def _color(x: Tensor, gen: torch.Generator | None) -> Tensor:
    b = x.shape[0]
    r = lambda: torch.rand(b, 1, 1, 1, generator=gen).to(x)  # noqa: E731
    x = x + (r() - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r() * 2) + mean  # saturation
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (r() + 0.5) + mean  # contrast


def _translation(x: Tensor, gen: torch.Generator | None, ratio: float = 0.125) -> Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b,), generator=gen)
    tx = torch.randint(-sw, sw + 1, (b,), generator=gen)
    # shift by integer pixels with zero fill: pad then gather a shifted window per sample
    padded = F.pad(x, (sw, sw, sh, sh))
    rows = (torch.arange(h)[None, :] + sh - ty[:, None]).to(x.device)
    cols = (torch.arange(w)[None, :] + sw - tx[:, None]).to(x.device)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: Tensor, gen: torch.Generator | None, ratio: float = 0.5) -> Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b,), generator=gen)
    cx = torch.randint(0, w + (1 - cw % 2), (b,), generator=gen)
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    in_y = ((ys - cy[:, None] + ch // 2) >= 0) & ((ys - cy[:, None] + ch // 2) < ch)
    in_x = ((xs - cx[:, None] + cw // 2) >= 0) & ((xs - cx[:, None] + cw // 2) < cw)
    mask = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * mask[:, None].to(x)


POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout}


def check_policy(policy: str) -> None:
    """Refuse (before training) a DiffAugment policy naming an unknown augmentation; '' and 'ada' pass."""
    from utils.errors import UserError, did_you_mean

    if not policy or policy == "ada":
        return
    for name in policy.split(","):
        if name.strip() not in POLICIES:
            raise UserError(f"--augment '{policy}' names an unknown augmentation '{name.strip()}': "
                            f"{did_you_mean(name.strip(), [*POLICIES, 'ada'])} (a comma-separated list, or 'ada')")


def diff_augment(x: Tensor, policy: str = "color,translation,cutout", p: float = 1.0,
                 generator: torch.Generator | None = None) -> Tensor:
    """Apply each augmentation of `policy` to each sample with probability `p` (differentiable in x)."""
    if not policy or p <= 0:
        return x
    for name in policy.split(","):
        augmented = POLICIES[name.strip()](x, generator)
        if p >= 1:
            x = augmented
        else:
            keep = (torch.rand(x.shape[0], 1, 1, 1, generator=generator) < p).to(x)
            x = keep * augmented + (1 - keep) * x
    return x


class AdaptiveAugment:
    """ADA's controller: p moves by `speed` per update towards keeping r_t at `target`."""

    def __init__(self, target: float = 0.6, speed: float = 0.01, p: float = 0.0, policy: str = "color,translation,cutout"):
        self.target, self.speed, self.p, self.policy = target, speed, p, policy

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return diff_augment(x, self.policy, self.p, generator)

    def update(self, real_logits: Tensor) -> float:
        r_t = torch.sign(real_logits.detach()).mean().item()
        self.p = float(min(1.0, max(0.0, self.p + self.speed * (1 if r_t > self.target else -1))))
        return r_t

    def state_dict(self) -> dict:
        return {"p": self.p}

    def load_state_dict(self, sd: dict) -> None:
        self.p = float(sd["p"])
