"""The demo in a real browser: Debian's headless Chromium (playwright drives the system executable)."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

import models
from inference.web.settings import ServerSettings, StudySettings
from inference.web.votes import VoteStore

TIMEOUT_MS = 60_000


def study_settings(tmp) -> ServerSettings:
    study = StudySettings(a="dcgan:digits", b="vanilla_gan:digits", db=tmp / "study.db", prompts=("3",), seeds=(0, 1))
    return ServerSettings(models=("dcgan", "vanilla_gan"), output_dir=tmp / "files", study=study)


@pytest.fixture(scope="module")
def server(live, module_tmp):
    with live(study_settings(module_tmp)) as url:
        yield url


@pytest.fixture(scope="module")
def page(browser, server):
    """One page for the module's tests (a page load is seconds on a loaded machine); each test opens its tab."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server + "/")
    page.wait_for_selector("#gen-button")
    yield page
    context.close()


def images_in(page, selector: str, count: int | None = None) -> list[np.ndarray]:
    """The images shown under `selector`, as the browser received them (fetched by their own URLs)."""
    found = page.locator(f"{selector} img")
    if count is not None:
        page.wait_for_function(f"document.querySelectorAll('{selector} img').length === {count}")
    else:
        found.first.wait_for()
    srcs = [found.nth(i).get_attribute("src") for i in range(found.count())]
    return [np.asarray(Image.open(io.BytesIO(page.request.get(src).body()))) for src in srcs]


def wait_info(page, selector: str, *texts: str) -> str:
    """Wait until the settings box under a result names `texts` (the page's tabs keep earlier results)."""
    cond = " && ".join(f"v.includes({t!r})" for t in texts)
    page.wait_for_function(f"(() => {{ const e = document.querySelector('{selector} textarea'); "
                           f"const v = e ? e.value : ''; return {cond}; }})()")
    return page.locator(f"{selector} textarea").input_value()


def set_number(page, selector: str, value) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")


def test_the_page_loads_with_the_registry_tabs(page):
    assert page.title() == "cv-generative"
    for tab in ("Generate", "Interpolate", "Latents", "Study"):
        assert page.get_by_role("tab", name=tab).count() == 1, tab
    for tab in ("Camera", "Video"):  # no 3D or video model is served here
        assert page.get_by_role("tab", name=tab).count() == 0, tab


def test_generate_with_the_default_model_shows_its_images(page):
    page.get_by_role("tab", name="Generate").click()
    set_number(page, "#gen-seed", 4)
    page.click("#gen-button")
    info = wait_info(page, "#gen-info", "seed=4")
    shown = images_in(page, "#gen-gallery", count=4)
    assert all(im.std() > 0 for im in shown)  # not a constant image
    want = models.generate("gan", "dcgan", seed=4, num_images=4).images
    assert all(np.array_equal(s, np.asarray(w)) for s, w in zip(shown, want))
    assert "seed=4" in info and "python inference/generate_image.py --model dcgan --preset digits --seed 4" in info


def test_the_interpolation_tab_returns_the_frames_asked_for(page):
    page.get_by_role("tab", name="Interpolate").click()
    set_number(page, "#int-frames", 5)
    page.click("#int-button")
    wait_info(page, "#int-info", "frames=5")
    frames = images_in(page, "#int-gallery", count=5)  # the strip and GIF are separate components
    assert len(frames) == 5 and not np.array_equal(frames[0], frames[-1])
    page.locator("#int-video video").wait_for()


def test_an_uploaded_latent_regenerates_the_same_image(page, tmp_path):
    page.get_by_role("tab", name="Generate").click()
    set_number(page, "#gen-seed", 11)
    page.fill("#gen-truncation input[type=number]", "0.7")
    page.locator("#gen-truncation input[type=number]").press("Tab")
    page.click("#gen-button")
    wait_info(page, "#gen-info", "seed=11", "truncation=0.7")
    original = images_in(page, "#gen-gallery", count=4)
    link = page.locator("#gen-latents a").first
    link.wait_for()
    saved = tmp_path / "latents.safetensors"
    saved.write_bytes(page.request.get(link.get_attribute("href")).body())

    page.get_by_role("tab", name="Latents").click()
    page.set_input_files("#lat-upload input[type=file]", str(saved))
    page.locator("#lat-upload a").first.wait_for()  # uploaded
    page.click("#lat-button")
    wait_info(page, "#lat-info", "seed=11", "latents=from file")
    again = images_in(page, "#lat-gallery", count=4)
    assert len(again) == 4 and all(np.array_equal(a, b) for a, b in zip(original, again))
    # and they are not simply the default images: the truncated latents were used
    plain = models.generate("gan", "dcgan", seed=11, num_images=4).images
    assert not all(np.array_equal(a, np.asarray(p)) for a, p in zip(again, plain))


def test_a_study_vote_is_in_the_database_after_a_server_restart(browser, live, tmp_path):
    settings = study_settings(tmp_path)
    with live(settings) as url:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/")
        page.get_by_role("tab", name="Study").click()
        page.wait_for_function("document.querySelectorAll('#study-left img, #study-right img').length === 2")
        assert "0 votes" in page.locator("#study-tally").inner_text()
        page.click("#study-vote-left")
        page.wait_for_function("document.querySelector('#study-tally').innerText.includes('1 votes')")
        trial_text = page.locator("#study-case").inner_text()
        page.close()
    assert re.search(r"Trial 2", trial_text)
    with live(settings) as url:  # a new server on the same file
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/")
        page.get_by_role("tab", name="Study").click()
        page.wait_for_function("document.querySelector('#study-tally').innerText.includes('1 votes')")
        page.close()
    votes = VoteStore(settings.study.db).votes()
    assert len(votes) == 1 and votes[0].choice == "left" and votes[0].prompt == "3" and votes[0].seed in (0, 1)
    assert {votes[0].left, votes[0].right} == {"dcgan:digits", "vanilla_gan:digits"}
    assert votes[0].winner == votes[0].left


def test_the_camera_tab_renders_a_registered_3d_model(browser, live, tmp_path):
    with live(ServerSettings(models=("gaussian_splatting",), output_dir=tmp_path)) as url:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/")
        page.get_by_role("tab", name="Camera").click()
        page.locator("#cam-preset input").first.click()
        page.get_by_role("option", name="tiny").click()
        set_number(page, "#cam-views", 4)
        set_number(page, "#cam-size", 32)
        set_number(page, "#cam-azimuth", 90)
        page.click("#cam-button")
        view = images_in(page, "#cam-view")[0]
        assert view.shape[:2] == (32, 32) and view.std() > 0
        page.locator("#cam-video video").wait_for()
        page.locator("#cam-viewer canvas").wait_for()
        info = page.locator("#cam-info textarea").input_value()
        command = next(line for line in info.splitlines() if line.startswith("python "))
        assert command.startswith("python inference/generate_3d.py --model gaussian_splatting --preset tiny")
        assert "--frames 4" in command and "--size 32" in command and "--elevation 25" in command
        page.close()
