"""The seed's inference API: AetheristInferencePipeline and BatchInferencePipeline, on the tiny preset."""
import pytest
import torch
from PIL import Image

from models.gan.aetherist.inference import AetheristInferencePipeline, BatchInferencePipeline, slerp
from utils.errors import UserError
from utils.rendering.camera_labels import create_camera_pose


@pytest.fixture(scope="module")
def pipeline():
    return AetheristInferencePipeline(preset="tiny", device="cpu")


def test_generate_save_and_reload_latents(pipeline, tmp_path):
    result = pipeline.generate(num_samples=2, seed=42)
    assert result["images"].shape == (2, 3, 64, 64) and result["images"].min() >= -1 and result["images"].max() <= 1
    assert result["latent_codes"].shape == (2, 32) and result["camera_poses"].shape == (2, 25)
    paths = pipeline.save_images(result["images"], tmp_path / "out")
    assert [p.name for p in paths] == ["generated_0000.png", "generated_0001.png"]
    assert Image.open(paths[0]).size == (64, 64)
    saved = pipeline.save_latents(result["latent_codes"], tmp_path / "z.safetensors")
    z = pipeline.load_latents(saved)
    again = pipeline.generate(latent_codes=z, seed=42)
    assert torch.equal(again["images"], result["images"])
    big = pipeline.generate(num_samples=1, seed=42, resolution=96)
    assert big["images"].shape[-1] == 96


def test_custom_camera_and_interpolation(pipeline):
    pose = create_camera_pose(elevation=30, azimuth=45, radius=2.0)
    result = pipeline.generate(num_samples=1, camera_poses=pose.unsqueeze(0), seed=0)
    assert torch.allclose(result["camera_poses"][0, :16].reshape(4, 4), pose)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    lin = pipeline.interpolate(z[0], z[1], steps=3, interpolation_method="linear")
    sl = pipeline.interpolate(z[0], z[1], steps=3, interpolation_method="slerp")
    assert lin["images"].shape == (3, 3, 64, 64)
    assert torch.allclose(lin["latent_codes"][0], z[0]) and torch.allclose(sl["latent_codes"][-1], z[1], atol=1e-5)
    mid = slerp(z[0], z[1], torch.tensor([0.5]))[0]
    assert torch.allclose(sl["latent_codes"][1], mid)
    # slerp keeps the norm between the ends' norms; the straight line's midpoint is shorter
    assert mid.norm() > lin["latent_codes"][1].norm()
    with pytest.raises(UserError, match="linear' or 'slerp"):
        pipeline.interpolate(z[0], z[1], steps=3, interpolation_method="cubic")


def test_batch_pipeline_writes_every_image(pipeline, tmp_path):
    batch = BatchInferencePipeline(pipeline, max_batch_size=2)
    result = batch.generate_large_batch(5, tmp_path / "many")
    assert len(result["paths"]) == 5 and result["num_batches"] == 3
    assert all(p.exists() for p in result["paths"])
    assert (tmp_path / "many" / "generated_latents.safetensors").exists()


def test_mistakes_are_one_line(pipeline, tmp_path):
    with pytest.raises(UserError, match="CUDA"):
        AetheristInferencePipeline(preset="tiny", device="cpu", half_precision=True)
    with pytest.raises(UserError, match="model_path"):
        AetheristInferencePipeline()
    with pytest.raises(UserError, match="resolution"):
        pipeline.generate(num_samples=1, resolution=4096)
    with pytest.raises(UserError, match="latent"):
        pipeline.interpolate(torch.zeros(3), torch.zeros(3))
