"""evaluate/clip_score.py end to end on a random-weight open_clip model folder (open_clip's hub layout),
scored against open_clip itself; prompts from sidecars, metadata.jsonl or --prompt; one-line errors."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import open_clip
from open_clip.model import CLIP
from safetensors.torch import save_file

CONFIG = {"model_cfg": {"embed_dim": 16,
                        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
                        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}},
          "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
PROMPTS = {"fox.png": "a red fox in snow", "sea.png": "the blue sea", "sub/leaf.png": "a green leaf"}
COLOURS = {"fox.png": (200, 40, 20), "sea.png": (10, 40, 220), "sub/leaf.png": (30, 200, 40)}


@pytest.fixture
def model_folder(tmp_path):
    """A tiny CLIP with random weights, written as open_clip_config.json + open_clip_model.safetensors."""
    folder = tmp_path / "tiny_clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(CONFIG))
    torch.manual_seed(0)
    model = CLIP(**CONFIG["model_cfg"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def _images(root, sidecars=True):
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(-30, 30, (40, 48, 3))
        Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)).save(path)
        if sidecars:
            path.with_suffix(".txt").write_text(PROMPTS[name] + "\n")
    return root


def _reference(folder, images_root, prompts):
    """open_clip's own scores: 100 * max(cos(image, text), 0) with the folder's preprocessing."""
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    names = sorted(prompts)
    with torch.no_grad():
        fi = model.encode_image(torch.stack([preprocess(Image.open(images_root / n).convert("RGB")) for n in names]))
        ft = model.encode_text(tokenizer([prompts[n] for n in names]))
    cos = torch.nn.functional.cosine_similarity(fi, ft, dim=-1)
    return dict(zip(names, (100 * cos.clamp_min(0)).tolist()))


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return {row["file"]: (row["prompt"], float(row["score"])) for row in csv.DictReader(f)}


def test_sidecar_prompts_end_to_end(tmp_path, model_folder, call_script):
    images = _images(tmp_path / "images")
    code, out, err = call_script("clip_score", images, "--model", model_folder, "--device", "cpu", "--per-image",
                                 tmp_path / "scores.csv", "--batch-size", "2", "--quiet")
    assert code == 0, err
    expected = _reference(model_folder, images, PROMPTS)
    rows = _read_csv(tmp_path / "scores.csv")
    assert sorted(rows) == sorted(PROMPTS)
    for name, (prompt, score) in rows.items():
        assert prompt == PROMPTS[name] and abs(score - expected[name]) < 1e-4, name
    mean = float(out.split("CLIP score: ")[1].split()[0])
    assert abs(mean - np.mean(list(expected.values()))) < 1e-3 and "(3 images" in out


def test_metadata_jsonl_and_one_prompt(tmp_path, model_folder, call_script):
    images = _images(tmp_path / "images", sidecars=False)
    other = {"fox.png": "a cat", "sea.png": "mountains", "sub/leaf.png": "a leaf"}
    with open(images / "metadata.jsonl", "w") as f:
        for name, text in other.items():
            f.write(json.dumps({"file_name": name, "text": text}) + "\n")
    code, out, err = call_script("clip_score", images, "--model", model_folder, "--device", "cpu", "--quiet",
                                 "--per-image", tmp_path / "meta.csv")
    assert code == 0, err
    expected = _reference(model_folder, images, other)
    assert all(abs(s - expected[n]) < 1e-4 and p == other[n] for n, (p, s) in _read_csv(tmp_path / "meta.csv").items())
    code, out, err = call_script("clip_score", images, "--model", model_folder, "--device", "cpu", "--quiet",
                                 "--prompt", "a photo", "--per-image", tmp_path / "one.csv")
    assert code == 0, err
    expected = _reference(model_folder, images, dict.fromkeys(other, "a photo"))
    assert all(abs(s - expected[n]) < 1e-4 and p == "a photo" for n, (p, s) in _read_csv(tmp_path / "one.csv").items())


def test_bad_inputs_are_one_line(tmp_path, model_folder, call_script, one_line_error):
    images = _images(tmp_path / "images")
    (images / "sea.txt").unlink()
    m = ["--model", model_folder, "--device", "cpu"]
    code, out, err = call_script("clip_score", images, *m)
    one_line_error(code, err, "1 of 3 images have no prompt", "sea.png", "sea.txt", "--prompt")
    assert not list(tmp_path.glob("*.csv"))
    (images / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\n')
    one_line_error(*call_script("clip_score", images, *m)[::2], "metadata.jsonl:1", "gone.png")
    (images / "metadata.jsonl").write_text("not json\n")
    one_line_error(*call_script("clip_score", images, *m)[::2], "metadata.jsonl:1", "not valid JSON")
    (images / "metadata.jsonl").unlink()
    for args, fragments in [
        ((tmp_path / "nowhere", *m), ["image folder not found", "nowhere"]),
        ((images, *m, "--pretrained", "openai"), ["is a folder and brings its own weights", "drop --pretrained"]),
        ((images, *m, "--prompt", "  "), ["--prompt is empty"]),
        ((images, *m, "--prompt", "x", "--per-image", tmp_path / "s.txt"), ["--per-image needs a .csv"]),
        ((images, "--prompt", "x", "--model", "ViT-B-33", "--device", "cpu"), ["unknown open_clip model", "ViT-B-32"]),
        ((images, "--prompt", "x", "--model", tmp_path, "--device", "cpu"), ["no open_clip_config.json"]),
        # the default model offline, nothing cached: the weights' one line, before anything is built
        ((images, "--prompt", "x", "--device", "cpu"), ["ViT-B-32/openai", "not in the local cache", "offline"]),
    ]:
        code, out, err = call_script("clip_score", *args)
        one_line_error(code, err, *fragments)


def test_help_is_complete_and_the_file_runs_from_anywhere(run_script):
    res = run_script("clip_score", "--help")  # `python evaluate/clip_score.py` from another folder
    text = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stderr
    assert all(k in text for k in ("folder", "--prompt", "--model", "--pretrained", "--device", "--batch-size",
                                   "--per-image", "metadata.jsonl", ".txt"))
