"""The REST API against a live uvicorn on 127.0.0.1: each endpoint, its errors, its limits, concurrency."""
from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import models
from inference.web.settings import Limits, ServerSettings


def decode(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


@pytest.fixture(scope="module")
def base(live, module_tmp):
    with live(ServerSettings(models=("dcgan", "biggan"), output_dir=module_tmp / "files", concurrency=2,
                             queue=64)) as url:
        yield url


def post(base: str, path: str, body, **kw) -> httpx.Response:
    return httpx.post(base + path, json=body, timeout=60, **kw)


def test_health_models_and_schema(base):
    health = httpx.get(base + "/health").json()
    assert health["status"] == "ok" and health["models"] == 2
    listed = {m["name"]: m for m in httpx.get(base + "/models").json()["models"]}
    assert set(listed) == {"dcgan", "biggan"}
    assert listed["dcgan"]["default_preset"] == "digits" and "tiny" in listed["dcgan"]["presets"]
    assert listed["dcgan"]["latent_tools"] and "truncation" in listed["biggan"]["options"]
    schema = httpx.get(base + "/openapi.json").json()
    assert {"/generate", "/interpolate", "/models", "/health"} <= set(schema["paths"])
    assert "GenerateBody" in schema["components"]["schemas"]


def test_generate_returns_the_facades_images_for_the_seed(base):
    r = post(base, "/generate", {"model": "dcgan", "seed": 5, "num_images": 3, "prompt": "7"})
    assert r.status_code == 200, r.text
    body = r.json()
    got = np.stack([decode(x) for x in body["images"]])
    want = models.generate("gan", "dcgan", seed=5, num_images=3, prompt="7").images
    assert np.array_equal(got, np.stack([np.asarray(im) for im in want]))
    assert got.std() > 0 and (body["width"], body["height"]) == (32, 32)
    assert body["command"] == ("python inference/generate_image.py --model dcgan --preset digits --prompt 7 "
                               "--seed 5 --num-images 3")
    assert body["settings"]["seed"] == 5 and body["settings"]["preset"] == "digits"


def test_png_and_url_formats(base):
    png = post(base, "/generate", {"seed": 1, "num_images": 1, "format": "png"})
    assert png.headers["content-type"] == "image/png"
    one = np.asarray(Image.open(io.BytesIO(png.content)))
    urls = post(base, "/generate", {"seed": 1, "num_images": 1, "format": "url"}).json()["urls"]
    fetched = httpx.get(base + urls[0])
    assert fetched.status_code == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(fetched.content))), one)
    assert httpx.get(base + "/files/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_returned_latents_regenerate_the_same_images(base):
    first = post(base, "/generate", {"seed": 9, "num_images": 2, "truncation": 0.6, "return_latents": True}).json()
    again = post(base, "/generate", {"latents": first["latents"]}).json()
    assert again["images"] == first["images"]
    assert again["command"] is None and "load_latents" in again["python"]


def test_interpolate_gives_the_frames_asked_for_between_the_two_seeds(base):
    r = post(base, "/interpolate", {"seed_a": 3, "seed_b": 4, "frames": 6, "mode": "lerp"})
    assert r.status_code == 200, r.text
    frames = [decode(x) for x in r.json()["frames"]]
    assert len(frames) == 6
    gif = Image.open(io.BytesIO(base64.b64decode(r.json()["gif"])))
    assert gif.n_frames == 6
    # the ends are the seeds' own one-image results (one class throughout: seed 3's)
    label = int(models.generate("gan", "dcgan", seed=3, num_images=1).labels[0])
    for seed, frame in ((3, frames[0]), (4, frames[-1])):
        z = models.generate("gan", "dcgan", seed=seed, num_images=1).latents
        want = models.generate("gan", "dcgan", latents=z, labels=[label]).images[0]
        assert np.array_equal(frame, np.asarray(want))
    assert not np.array_equal(frames[0], frames[-1])


@pytest.mark.parametrize("body, status, words", [
    ({"model": "no_such"}, 404, "unknown model 'no_such'"),
    ({"model": "flux"}, 404, "not served here"),
    ({"num_images": 100}, 413, "at most 16"),
    ({"height": 5000}, 413, "above this server's limit"),
    ({"preset": "huge"}, 400, "no preset 'huge'"),
    ({"prompt": "cat"}, 400, "'cat' is not a class"),
    ({"steps": 3}, 400, "steps does not apply"),
    ({"seed": -1}, 422, "seed"),
    ({"colour": "red"}, 422, "colour"),
    ({"latents": "not base64!"}, 400, "not valid base64"),
])
def test_mistakes_are_one_line_4xx_and_the_server_keeps_serving(base, body, status, words):
    r = post(base, "/generate", body)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert words in message and "\n" not in message and "Traceback" not in message
    assert post(base, "/generate", {"num_images": 1}).status_code == 200


def test_bad_json_and_interpolation_errors(base):
    r = httpx.post(base + "/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = post(base, "/interpolate", {"model": "biggan", "preset": "tiny", "frames": 100})
    assert r.status_code == 413
    assert post(base, "/interpolate", {"frames": 1}).status_code == 422
    assert httpx.get(base + "/health").status_code == 200


def test_body_size_and_token(live, settings):
    with live(replace(settings, token="s3cret", limits=Limits(max_body_bytes=2000))) as url:
        assert httpx.get(url + "/health").status_code == 401
        r = post(url, "/generate", {"num_images": 1}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and "wrong API token" in r.json()["error"]
        assert httpx.get(url + "/").status_code == 401  # the demo page too
        good = {"Authorization": "Bearer s3cret"}
        assert post(url, "/generate", {"num_images": 1}, headers=good).status_code == 200
        assert post(url, "/generate", {"num_images": 1}, headers={"X-API-Token": "s3cret"}).status_code == 200
        big = post(url, "/generate", {"prompt": "x" * 3000}, headers=good)
        assert big.status_code == 413 and "body above" in big.json()["error"]
        # a browser: ?token= once sets a cookie and the page then loads
        with httpx.Client(base_url=url, follow_redirects=True) as browser:
            assert browser.get("/?token=s3cret").status_code == 200
            assert browser.get("/health").status_code == 200
        assert post(url, "/generate", {"num_images": 1}, headers=good).status_code == 200


def _concurrent(base: str, seeds: list[int], model: str = "dcgan") -> list[httpx.Response]:
    body = {"model": model, "preset": "tiny", "num_images": 2}
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=len(seeds))) as client:
        with ThreadPoolExecutor(len(seeds)) as pool:
            return list(pool.map(lambda s: client.post(base + "/generate", json={**body, "seed": s}), seeds))


def test_50_concurrent_generate_calls_equal_sequential_ones(base):
    """On the tiny DCGAN this is about half a second (measured on a loaded 2-core machine), so it stays in
    the default suite."""
    n = 50
    seeds = list(range(100, 100 + n))
    answers = _concurrent(base, seeds)
    assert [r.status_code for r in answers] == [200] * n
    for seed, r in zip(seeds, answers):
        want = models.generate("gan", "dcgan", preset="tiny", seed=seed, num_images=2).images
        got = [decode(x) for x in r.json()["images"]]
        assert all(np.array_equal(g, np.asarray(w)) for g, w in zip(got, want)), seed


def test_requests_beyond_the_queue_are_refused_with_retry_after(live, settings, registered):
    from tests.inference.web.fakes import SLOW, SlowPipeline

    registered(SLOW)
    SlowPipeline.calls = 0
    with live(replace(settings, models=("slow_test_gan",), concurrency=1, queue=2)) as url:
        answers = _concurrent(url, list(range(8)), model="slow_test_gan")
        codes = [r.status_code for r in answers]
        assert set(codes) <= {200, 503} and codes.count(503) >= 1, codes
        assert 3 <= codes.count(200) and SlowPipeline.calls == codes.count(200)  # refused ones never ran
        for r in answers:
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"]
        assert httpx.get(url + "/health").json()["queues"]["gan/slow_test_gan"]["running"] == 0
        # the served ones are each seed's own
        for seed, r in enumerate(answers):
            if r.status_code == 200:
                z = torch.randn((2, 4), generator=torch.Generator().manual_seed(seed))
                assert np.allclose(decode(r.json()["images"][0])[0, 0] / 255, torch.sigmoid(z[0, 0]).item(), atol=1 / 255)


def test_a_newly_registered_model_is_served_without_editing_the_demo(live, settings, registered):
    from tests.inference.web.fakes import SLOW, VIDEO

    registered(SLOW, VIDEO)
    with live(replace(settings, models=())) as url:
        names = {m["name"] for m in httpx.get(url + "/models").json()["models"]}
        assert {"slow_test_gan", "fake_video", "dcgan"} <= names
        config = httpx.get(url + "/config").text
        assert "tab-video" in config and "slow_test_gan" in config
        r = post(url, "/generate", {"model": "fake_video", "options": {"num_frames": 3}})
        assert r.status_code == 200 and base64.b64decode(r.json()["video"])[4:8] == b"ftyp"


def test_a_request_past_the_timeout_is_504_and_the_server_keeps_serving(live, settings, registered):
    from tests.inference.web.fakes import SLOW

    registered(SLOW)
    with live(replace(settings, models=("slow_test_gan", "dcgan"), limits=Limits(timeout_s=0.15))) as url:
        r = post(url, "/generate", {"model": "slow_test_gan"})
        assert r.status_code == 504 and "did not finish within 0.15s" in r.json()["error"]
        assert post(url, "/generate", {"model": "dcgan", "preset": "tiny"}).status_code == 200
