"""EG3D's released networks: full-size key coverage on meta, and the config read off a pickle's arguments."""
import json
from pathlib import Path

import pytest

from models.gan.aetherist.config import PRESETS
from models.gan.aetherist.convert import check_keys, config_from_nvlabs, expected_keys
from utils.errors import WeightsError

KEYS = json.loads((Path(__file__).parents[2] / "fixtures" / "eg3d" / "eg3d_release_keys.json").read_text())


@pytest.mark.parametrize("preset,release", [("eg3d-ffhq-512", "ffhq512-128"), ("eg3d-afhqcats-512", "ffhq512-128"),
                                            ("eg3d-shapenet-cars-128", "shapenet128")])
def test_every_key_of_the_released_networks_is_covered(preset, release):
    ref = KEYS[release]
    ours_g = expected_keys(PRESETS[preset])
    assert {k: list(v) for k, v in ours_g.items()} == ref["G"]
    ours_d = expected_keys(PRESETS[preset], discriminator=True)
    assert {k: list(v) for k, v in ours_d.items()} == ref["D"]


def test_config_from_the_pickled_arguments():
    kwargs = {"z_dim": 512, "c_dim": 25, "w_dim": 512, "img_resolution": 128, "img_channels": 3,
              "sr_num_fp16_res": 4, "mapping_kwargs": {"num_layers": 2}, "channel_base": 32768, "channel_max": 512,
              "fused_modconv_default": "inference_only", "num_fp16_res": 0, "conv_clamp": None,
              "rendering_kwargs": {"superresolution_module": "training.superresolution.SuperresolutionHybrid2X",
                                   "depth_resolution": 64, "depth_resolution_importance": 64, "ray_start": 0.1,
                                   "ray_end": 2.6, "box_warp": 1.6, "white_back": True, "c_gen_conditioning_zero": True,
                                   "avg_camera_radius": 1.7, "avg_camera_pivot": [0, 0, 0], "sr_antialias": True,
                                   "superresolution_noise_mode": "none", "c_scale": 1.0, "decoder_lr_mul": 1.0}}
    assert config_from_nvlabs(kwargs) == PRESETS["eg3d-shapenet-cars-128"]


def test_a_stylegan_pickle_and_a_wrong_checkpoint_are_refused_in_one_line():
    with pytest.raises(WeightsError, match="not an EG3D"):
        config_from_nvlabs({"z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 1024})
    sd = {k: __import__("torch").zeros(v) for k, v in KEYS["shapenet128"]["G"].items()}
    with pytest.raises(WeightsError, match="unexpected") as err:
        check_keys(sd, PRESETS["eg3d-ffhq-512"], "ffhq.pkl")
    assert "\n" not in str(err.value)
