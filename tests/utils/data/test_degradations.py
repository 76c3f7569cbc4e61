"""Real-ESRGAN's degradation model: kernels against BasicSR's own (golden fixture), formulas, noise, seeding."""
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from utils.data import degradation_kernels as K
from utils.data.degradation_noise import poisson_noise
from utils.data.degradations import REAL_ESRGAN, degrade, usm_sharp

FIXTURE = Path(__file__).parents[2] / "fixtures" / "esrgan" / "degradation_kernels.safetensors"


def test_kernels_equal_basicsr_at_fixed_parameters():
    ref = load_file(str(FIXTURE))
    ours = {
        "iso_k21_s2.5": K.gaussian_kernel(21, 2.5),
        "aniso_k21_s3_1_t0.7": K.gaussian_kernel(21, 3.0, 1.0, 0.7),
        "aniso_k15_s0.5_2.2_t-2.1": K.gaussian_kernel(15, 0.5, 2.2, -2.1),
        "gen_iso_k13_s1.7_b0.6": K.generalized_gaussian_kernel(13, 1.7, None, 0.0, 0.6),
        "gen_aniso_k21_s2.8_0.9_t1.2_b3.5": K.generalized_gaussian_kernel(21, 2.8, 0.9, 1.2, 3.5),
        "plateau_iso_k9_s1.1_b1.5": K.plateau_kernel(9, 1.1, None, 0.0, 1.5),
        "plateau_aniso_k19_s2.0_0.4_t-0.3_b1.9": K.plateau_kernel(19, 2.0, 0.4, -0.3, 1.9),
        "sinc_k7_c2.5": K.sinc_kernel(7, 2.5),
        "sinc_k15_c0.9_pad21": K.sinc_kernel(15, 0.9, pad_to=21),
        "sinc_k21_pi3": K.sinc_kernel(21, math.pi / 3),
    }
    assert set(ours) == set(ref)
    for name, k in ours.items():
        assert k.shape == ref[name].shape, name
        assert (k - ref[name]).abs().max() < 1e-7, name  # torch's Bessel J1 agrees with scipy to ~1e-8
        assert abs(k.sum().item() - 1) < 1e-12, name


def test_anisotropic_kernel_covariance_matches_sigma_and_rotation():
    sx, sy, theta = 2.0, 0.8, 0.6
    k = K.gaussian_kernel(41, sx, sy, theta)          # wide enough that truncation is negligible
    xx, yy = K._grid(41)
    cov = torch.tensor([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
    want = K.covariance(sx, sy, theta)
    assert torch.allclose(cov, want, atol=2e-3), (cov, want)
    evals = torch.linalg.eigvalsh(cov)
    assert torch.allclose(evals, torch.tensor([sy ** 2, sx ** 2], dtype=torch.float64), atol=2e-3)
    # the principal axis is rotated by theta from the x (column) axis
    vec = torch.linalg.eigh(cov).eigenvectors[:, 1]
    assert abs(abs(math.cos(theta) * vec[0] + math.sin(theta) * vec[1]) - 1) < 1e-4


def test_sinc_kernel_passes_below_its_cutoff_and_stops_above():
    cutoff = math.pi / 2
    k = K.sinc_kernel(21, cutoff, pad_to=63)
    spectrum = torch.fft.fft2(torch.fft.ifftshift(k)).abs()
    freq = torch.fft.fftfreq(63, dtype=torch.float64) * 2 * math.pi
    radius = torch.sqrt(freq[:, None] ** 2 + freq[None, :] ** 2)
    assert spectrum[radius < 0.7 * cutoff].min() > 0.8          # truncation ripple (Gibbs) only
    assert spectrum[(radius > 1.3 * cutoff) & (radius < math.pi)].max() < 0.15
    assert K.sinc_kernel(7, 2.0).sum().item() == 1.0 or abs(K.sinc_kernel(7, 2.0).sum().item() - 1) < 1e-12


def test_random_kernels_are_21_square_normalised_and_seeded():
    for seed in range(30):
        k = K.random_kernel(REAL_ESRGAN.first.kernel, torch.Generator().manual_seed(seed))
        assert k.shape == (21, 21) and abs(k.sum().item() - 1) < 1e-9
        assert torch.equal(k, K.random_kernel(REAL_ESRGAN.first.kernel, torch.Generator().manual_seed(seed)))
    finals = [K.random_final_sinc(torch.Generator().manual_seed(s)) for s in range(40)]
    identity = sum(bool(torch.equal(f, K.identity_kernel())) for f in finals)
    assert 0 < identity < 20                              # p(identity) = 0.2


def test_poisson_noise_variance_grows_with_intensity():
    gen = torch.Generator().manual_seed(0)
    for grey in (False, True):
        variances = []
        for level in (0.1, 0.4, 0.8):
            x = torch.full((1, 3, 64, 64), level)
            x[..., 0, :8] = torch.linspace(0, 1, 8)        # 256 levels would need more; 10 distinct -> v = 16
            noise = poisson_noise(x, 1.0, grey, gen)[..., 8:, :]
            variances.append(noise.var().item())
        v = 16.0
        for level, var in zip((0.1, 0.4, 0.8), variances):
            want = round(level * 255) / 255 / v if not grey else None
            if want is not None:
                assert abs(var - want) / want < 0.15, (level, var, want)
        assert variances[0] < variances[1] < variances[2]
    grey_noise = poisson_noise(torch.full((1, 3, 16, 16), 0.5), 1.0, True, gen)
    assert torch.equal(grey_noise[:, 0], grey_noise[:, 1]) and torch.equal(grey_noise[:, 1], grey_noise[:, 2])


def test_degrade_second_order_shapes_range_and_seeding():
    hr = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for order in (0, 1, 2):
        a = degrade(hr, 4, torch.Generator().manual_seed(7), order)
        b = degrade(hr, 4, torch.Generator().manual_seed(7), order)
        assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
        assert a.min() >= 0 and a.max() <= 1
        assert torch.equal((a * 255).round() / 255, a)   # rounded to 8 bits
    other = degrade(hr, 4, torch.Generator().manual_seed(8), 2)
    assert not torch.equal(other, degrade(hr, 4, torch.Generator().manual_seed(7), 2))


def test_usm_sharpening_raises_edge_contrast_and_keeps_flat_areas():
    x = torch.full((1, 3, 64, 64), 0.3)
    x[..., 32:] = 0.7
    y = usm_sharp(x)
    assert y[..., 0, 0].sub(0.3).abs().max() < 1e-6            # far from the edge: unchanged
    assert y[..., 32, 31].mean() < 0.3 and y[..., 32, 32].mean() > 0.7   # overshoot on both sides of the edge
    assert y.min() >= 0 and y.max() <= 1
