"""The camera-control proof of issue 13 (luma_dream): the whole loop offline on CPU. The tiny preset's
random VAE and transformer are first fitted on clips rendered from the built-in 3D scene along the camera
presets (they stand in for a pretrained base model: random weights have never learnt to make a video),
then frozen; the camera adapter alone trains on the same posed clips (`training.TINY_PROOF`; its noise
levels sigmoid(N(0.8, 1)): more weight where a clip's motion is decided). Clips generated from noise
through `LTXVideoPipeline(camera=..., camera_scale=4)` then move the way the camera asks, and by about
as much as the scene's own clips: the mean optical flow (`camera.global_flow`, global Lucas-Kanade on the
decoded frames) is compared, in the same run, with the fair reference: held-out rendered clips of the same
presets passed through the fitted VAE and back (a generated clip can be no sharper than the VAE makes it,
and the Lucas-Kanade estimate shrinks with blur: the round trip keeps ~0.8 of the rendered motion).
Asserted: pan-left / pan-right (x) and tilt-up / tilt-down (y) have the asked sign for every seed, with and
without camera guidance; with it, each preset's mean motion is between 0.4x and 2x its reference and
mostly along the asked axis; `orbit` (orbit-right: the camera circles to its right facing the target) has
the rendered orbit clips' sign of x flow for every seed, `orbit-left` on the mean over seeds.

Why guidance (`benchmarks/luma_camera.py`, teacher forcing on this run): the frozen 2-layer width-32 base
model damps motion while it denoises. From the true latents noised to sigma 0.6 it keeps ~0.4x of the
reference motion without the adapter (~0.65x with it); from sigma 0.95, ~0x (~0.3x with it). An adapter whose
only input is an addition to the tokens, trained on the squared error, so moves clips made from noise only
~0.15-0.3x of the reference (`camera_scale=1` below; ~0.1-0.2x with the old recipe's sigma_mean 0).
Guidance against the same frozen model's camera-free prediction (one more transformer call a step) gives
the size back.

One run, under load (2 CPU cores shared with 3 other jobs, the test on 1 thread; 13 min 53 s, a rerun at lighter load
8 min 30 s with the same figures:
`OMP_NUM_THREADS=1 nice -n 10 python -m pytest -q -s -m slow tests/models/video_generation/test_luma_camera_proof.py`),
mean flow per frame along the asked axis in px, generated (3 seeds, camera_scale 4) / VAE round trip
(rendered): pan-left +1.12 / +1.55 (1.93) = 0.72x, pan-right -1.14 / -1.52 (-1.94) = 0.75x, tilt-up (y)
+0.96 / +1.16 (1.44) = 0.83x, tilt-down (y) -0.99 / -1.13 (-1.43) = 0.87x; orbit-right x +0.38 / +0.41
(0.42), every seed positive; orbit-left x -0.19 / -0.35 (-0.33), every seed negative. camera_scale 1:
pan-left +0.28, pan-right -0.22, tilt-up +0.32, tilt-down -0.31 (0.14-0.28x), orbit-right +0.14,
orbit-left +0.00 (its sign not held)."""
from __future__ import annotations

import pytest
import torch

from models.video_generation.luma_dream.camera import global_flow

CAMERA_SCALE = 4.0
AXES = {"pan-left": (0, 1), "pan-right": (0, -1), "tilt-up": (1, 1), "tilt-down": (1, -1)}
"""preset -> (flow axis: 0 x, 1 y; the sign the picture moves with)"""


@pytest.fixture
def one_thread():
    """Thousands of tiny ops: one thread is several times faster than two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_generated_clips_follow_the_asked_camera(tmp_path, one_thread):
    from models.video_generation.luma_dream.training import TINY_PROOF, CameraRunOptions, CameraTrainer, SceneClips

    cfg = TINY_PROOF
    trainer = CameraTrainer(cfg, CameraRunOptions(out=str(tmp_path / "run"), progress=False))
    result = trainer.run()
    assert result["adapter"] and result["base_transformer"] and result["base_vae"]
    pipe = trainer.pipe
    pipe.camera_adapter = trainer.adapter.eval()
    presets = (*AXES, "orbit-right", "orbit-left")  # SceneClips names orbit orbit-right
    # the fair reference: held-out start poses (another seed), rendered, through the fitted VAE and back
    held_out = SceneClips(4 * len(presets), cfg.num_frames, cfg.size, seed=1, presets=presets)
    rendered, reference = {}, {}
    with torch.no_grad():
        for item in held_out.items:
            video = item["video"]
            z = pipe.vae.normalize(pipe.vae.encode(video.permute(1, 0, 2, 3)[None]).mode().float())
            rendered.setdefault(item["preset"], []).append(global_flow((video + 1) / 2))
            reference.setdefault(item["preset"], []).append(global_flow(pipe.decode(z)[0]))
    rendered = {k: torch.stack(v).mean(0) for k, v in rendered.items()}
    reference = {k: torch.stack(v).mean(0) for k, v in reference.items()}
    flows, plain = {}, {}
    for name in presets:
        for scale, into in ((CAMERA_SCALE, flows), (1.0, plain)):
            out = pipe(prompt=cfg.prompt, camera=name, num_frames=9, height=32, width=32, steps=20,
                       guidance_scale=1.0, seed=0, num_videos=3, progress=False, camera_scale=scale)
            into[name] = torch.stack([global_flow(v) for v in out.pixels])  # (3 seeds, 2)
    for name in presets:
        print(f"{name}: rendered {rendered[name].tolist()}, VAE round trip {reference[name].tolist()}, generated "
              f"(camera_scale {CAMERA_SCALE:g}) {flows[name].tolist()}, camera_scale 1 {plain[name].tolist()}")
    for name, (axis, sign) in AXES.items():
        assert (sign * flows[name][:, axis] > 0).all(), name
        assert (sign * plain[name][:, axis] > 0).all(), name
        along, ref = sign * flows[name][:, axis].mean(), sign * reference[name][axis]
        assert ref > 0.8, name  # the reference itself moves (~1.5 px a frame for the pans, ~1.2 for the tilts)
        assert 0.4 * ref < along < 2.0 * ref, (name, float(along), float(ref))
        assert flows[name][:, 1 - axis].abs().mean() < 0.5 * along, name  # mostly along the asked axis
    # orbit-right circles the target: the rendered clips' x flow is positive (the far background slides right)
    assert reference["orbit-right"][0] > 0 and reference["orbit-left"][0] < 0
    assert (flows["orbit-right"][:, 0] > 0).all()
    assert flows["orbit-left"][:, 0].mean() < 0
