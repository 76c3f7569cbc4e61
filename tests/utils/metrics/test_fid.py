"""FID / KID: the network against pytorch-fid, the distances against pytorch-fid, clean-fid and
torch-fidelity, closed forms, statistics files and the command line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluate import fid_score
from utils.metrics.fid import (FeatureExtractor, frechet_distance, kernel_inception_distance, load_stats,
                                save_stats, statistics)
from utils.metrics.inception import FIDInceptionV3, convert_inception_state_dict, load_inception, resize_299

REPO = Path(__file__).resolve().parents[3]
SIZE = 75  # the smallest input the Inception grid reductions accept; keeps CPU tests fast


@pytest.fixture(scope="module")
def net(make_inception):
    return make_inception()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, net):
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def _folder(root: Path, name: str, n: int, seed: int, size: int = SIZE) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir()
    for i in range(n):
        base = rng.integers(0, 255, (1, 1, 3))
        noise = rng.integers(-60, 60, (size, size, 3))
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


# -- the network ---------------------------------------------------------------------------------

def test_features_match_pytorch_fid(make_pytorch_fid_inception, net):
    ref = make_pytorch_fid_inception(net.state_dict())
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ref(x)[0].flatten(1)
        got = net(x)
    assert expected.abs().mean() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # The other way round: pytorch-fid's module layout through our converter.
    other = FIDInceptionV3(resize="none")
    sd = convert_inception_state_dict(ref.state_dict())
    assert "fc.weight" not in sd and not any(k.startswith("blocks.") for k in sd)
    other.load_state_dict(sd, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(other(x), expected, atol=1e-4, rtol=0)
        # Folding the batch norms changes nothing beyond rounding.
        torch.testing.assert_close(other.fuse()(x), expected, atol=1e-4, rtol=0)


def test_state_dict_is_torchvision_layout(net):
    import torchvision

    tv = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    assert ours == theirs


def test_resize_is_pytorch_fids():
    x = torch.rand(1, 3, 32, 40)
    torch.testing.assert_close(resize_299(x), torch.nn.functional.interpolate(
        x, size=(299, 299), mode="bilinear", align_corners=False))


def _pytorch_fid_folder_parity(make_pytorch_fid_inception, tmp_path, net, dims, n):
    import pytorch_fid.inception as pfi
    from pytorch_fid import fid_score as pf

    a, b = _folder(tmp_path, "a", n, 0), _folder(tmp_path, "b", n, 1)
    make_pytorch_fid_inception(net.state_dict())  # patches the weight loader
    ref = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[dims]], resize_input=False).eval()
    files = lambda d: sorted(d.glob("*.png"))
    m1, s1 = pf.calculate_activation_statistics(files(a), ref, batch_size=2, dims=dims, num_workers=0)
    m2, s2 = pf.calculate_activation_statistics(files(b), ref, batch_size=2, dims=dims, num_workers=0)
    expected = pf.calculate_frechet_distance(m1, s1, m2, s2)
    ex = FeatureExtractor(model=net, device="cpu", batch_size=4, progress=False, dims=dims)
    fa, fb = ex.features(a), ex.features(b)
    np.testing.assert_allclose(statistics(fa)[0], m1, atol=1e-5)
    got = frechet_distance(*statistics(fa), *statistics(fb))
    assert got > 1e-3 and abs(got - expected) < 1e-3, (got, expected)


def test_fid_matches_pytorch_fid_on_folders(make_pytorch_fid_inception, tmp_path, net):
    _pytorch_fid_folder_parity(make_pytorch_fid_inception, tmp_path, net, 64, 24)


@pytest.mark.slow
def test_fid_matches_pytorch_fid_on_folders_2048(make_pytorch_fid_inception, tmp_path, net):
    _pytorch_fid_folder_parity(make_pytorch_fid_inception, tmp_path, net, 2048, 4)


def test_weights_load_from_torch_hub_cache(_private_torch_home, weights_file, net):
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    os.symlink(weights_file, folder / weights_file.name)
    model = load_inception(device="cpu", resize="none", fuse=False)
    torch.testing.assert_close(model.Mixed_7c.branch_pool.conv.weight, net.Mixed_7c.branch_pool.conv.weight)


def test_missing_weights_offline_is_one_line():
    from utils.errors import WeightsError

    with pytest.raises(WeightsError) as info:
        load_inception(download=False)
    assert "pt_inception-2015-12-05-6726825d.pth" in str(info.value) and "\n" not in str(info.value)


# -- distances -----------------------------------------------------------------------------------

def _features(n=300, d=32, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def test_fid_of_a_set_with_itself_is_zero():
    mu, sigma = statistics(_features())
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_fid_closed_form_gaussians():
    rng = np.random.default_rng(3)
    d = 16
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.2, 3, d), rng.uniform(0.2, 3, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T  # commuting, so sqrtm(S1 S2) = Q sqrt(ab) Q^T
    expected = ((mu1 - mu2) ** 2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    assert abs(frechet_distance(mu1, s1, mu2, s2) - expected) < 1e-8
    # Two isotropic Gaussians: |dmu|^2 + d (s1 - s2)^2 in standard deviations.
    assert abs(frechet_distance(np.zeros(4), 4 * np.eye(4), np.ones(4), np.eye(4)) - (4 + 4 * 1)) < 1e-10


def test_frechet_matches_reference_tools():
    from cleanfid.fid import frechet_distance as clean_fd
    from pytorch_fid.fid_score import calculate_frechet_distance
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    m1, s1 = statistics(_features(seed=0))
    m2, s2 = statistics(_features(seed=1, shift=0.3))
    ours = frechet_distance(m1, s1, m2, s2)
    assert ours > 0.1
    assert abs(ours - calculate_frechet_distance(m1, s1, m2, s2)) < 1e-6
    assert abs(ours - clean_fd(m1, s1, m2, s2)) < 1e-6
    fidelity = fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, False)
    assert abs(ours - fidelity["frechet_inception_distance"]) < 1e-6


def test_kid_matches_torch_fidelity_and_clean_fid():
    from cleanfid.fid import kernel_distance
    from torch_fidelity.metric_kid import kid_features_to_metric

    f1, f2 = _features(120, 16, 0), _features(100, 16, 1, shift=0.2)
    mean, std = kernel_inception_distance(f1, f2, subsets=10, subset_size=50, seed=7)
    ref = kid_features_to_metric(torch.from_numpy(f1), torch.from_numpy(f2), kid_subsets=10,
                                 kid_subset_size=50, rng_seed=7, verbose=False)
    assert abs(mean - ref["kernel_inception_distance_mean"]) < 1e-10
    assert abs(std - ref["kernel_inception_distance_std"]) < 1e-10
    # With whole sets as the subset the draw does not matter: clean-fid must agree exactly.
    f2 = f2[:100]
    full, _ = kernel_inception_distance(f1[:100], f2, subsets=2, subset_size=100)
    assert abs(full - kernel_distance(f1[:100], f2, num_subsets=2, max_subset_size=100)) < 1e-10
    # Unbiased MMD^2 of a set with itself is slightly negative (the cross term keeps the diagonal).
    same, _ = kernel_inception_distance(f1, f1, subsets=3, subset_size=120)
    assert same < 0


# -- statistics files ---------------------------------------------------------------------------

def test_stats_file_is_pytorch_fid_compatible(tmp_path):
    from pytorch_fid.fid_score import compute_statistics_of_path

    mu, sigma = statistics(_features())
    path = save_stats(tmp_path / "ref.npz", mu, sigma)
    m, s = compute_statistics_of_path(str(path), None, 1, 2048, "cpu")
    np.testing.assert_array_equal(m, mu)
    np.testing.assert_array_equal(s, sigma)
    np.testing.assert_array_equal(load_stats(path)[1], sigma)
    np.savez(tmp_path / "clean.npz", mu=mu.astype(np.float32), sigma=sigma)  # clean-fid writes this layout
    assert load_stats(tmp_path / "clean.npz")[0].dtype == np.float64


# -- sources ---------------------------------------------------------------------------------------

def test_sources_agree(tmp_path, net):
    folder = _folder(tmp_path, "a", 3, 0)
    images = [Image.open(p) for p in sorted(folder.glob("*.png"))]
    tensor = torch.stack([torch.from_numpy(np.asarray(im)).permute(2, 0, 1) for im in images]).float() / 255
    ex = FeatureExtractor(model=net, device="cpu", batch_size=2, progress=False)
    from_folder = ex.features(folder)
    np.testing.assert_allclose(ex.features(images), from_folder, atol=1e-6)
    np.testing.assert_allclose(ex.features(tensor * 2 - 1, value_range=(-1, 1)), from_folder, atol=1e-5)
    draws = iter([images[:2], images[2:]])
    np.testing.assert_allclose(ex.features(lambda n: next(draws), num_samples=3), from_folder, atol=1e-6)


# -- command line ---------------------------------------------------------------------------------

def _run_cli(*args, env=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "evaluate/fid_score.py", *args], cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_bad_folder_is_one_line_exit_2(tmp_path):
    proc = _run_cli(str(tmp_path / "missing"), str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "folder not found" in proc.stderr


def test_cli_missing_weights_offline_is_one_line(tmp_path):
    a = _folder(tmp_path, "a", 2, 0)
    proc = subprocess.run([sys.executable, "-m", "evaluate.fid_score", str(a), str(a)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "th")})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "pt_inception-2015-12-05-6726825d.pth" in proc.stderr and "--weights" in proc.stderr


def test_cli_fid_kid_and_stats(tmp_path, weights_file, capsys):
    a, b = _folder(tmp_path, "a", 4, 0), _folder(tmp_path, "b", 4, 1)
    # 64-d features (pytorch-fid's --dims 64): a 2048 x 2048 sqrtm takes minutes on 2 busy cores.
    common = ["--weights", str(weights_file), "--resize", "none", "--device", "cpu", "--quiet", "--batch-size", "3",
              "--dims", "64"]
    assert fid_score.main([str(a), str(b), "--kid", "--kid-subsets", "2", *common]) == 0
    out = capsys.readouterr().out
    fid_ab = float(out.split("FID:")[1].split()[0])
    assert fid_ab > 0 and "KID:" in out
    stats = tmp_path / "b.npz"
    assert fid_score.main([str(b), "--save-stats", str(stats), *common]) == 0
    capsys.readouterr()
    assert fid_score.main([str(a), str(stats), *common]) == 0
    assert abs(float(capsys.readouterr().out.split("FID:")[1].split()[0]) - fid_ab) < 1e-3
    with pytest.raises(SystemExit) as info:  # KID needs images on both sides
        fid_score.main([str(a), str(stats), "--kid", *common])
    assert info.value.code == 2


def test_cli_dataset_stats_and_model(tmp_path, weights_file, capsys, monkeypatch):
    common = ["--weights", str(weights_file), "--resize", "none", "--device", "cpu", "--quiet", "--dims", "64"]
    stats = tmp_path / "digits.npz"
    assert fid_score.main(["--dataset", "digits", "--dataset-size", str(SIZE), "--num-samples", "4",
                           "--save-stats", str(stats), *common]) == 0
    assert "4 images" in capsys.readouterr().out

    import models
    from utils.outputs import ImageOutput

    calls = []

    def fake_load(modality, name, weights=None, preset=None, device=None, **kw):
        assert (modality, name, preset) == ("gan", "dcgan", "tiny")

        def pipe(num_images, seed):
            calls.append((num_images, seed))
            rng = np.random.default_rng(seed)
            return ImageOutput([Image.fromarray(rng.integers(0, 255, (SIZE, SIZE), dtype=np.uint8))
                                for _ in range(num_images)])
        return pipe

    monkeypatch.setattr(models, "load", fake_load)
    assert fid_score.main(["--model", "dcgan", "--preset", "tiny", "--ref-stats", str(stats), "--num-samples", "5",
                           "--batch-size", "2", *common]) == 0
    # each batch starts at the seed after the images already drawn: image i of a call uses seed + i, so
    # no image is drawn twice
    assert calls == [(2, 0), (2, 2), (1, 4)]
    assert float(capsys.readouterr().out.split("FID:")[1].split()[0]) > 0
