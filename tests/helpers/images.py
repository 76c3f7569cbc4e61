"""Image helpers of the tests."""
from __future__ import annotations

import torch


def signed(output) -> torch.Tensor:
    """An ImageOutput's pixels back in [-1, 1], the range GAN generators and references work in."""
    return output.pixels * 2 - 1
