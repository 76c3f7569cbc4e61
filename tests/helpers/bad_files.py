"""Files a user may hand a command line by mistake (or an attacker on purpose), made on the spot.

`make_bad_files(folder)` writes each kind once and returns {kind: path}. The malicious pickles would
create `folder / PWNED` if any loader ran their code; tests assert it never appears.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

PWNED = "PWNED"

WEIGHT_KINDS = ("missing", "empty", "truncated_safetensors", "random_bytes", "wrong_model", "evil_pkl", "evil_pt",
                "evil_ckpt", "evil_bin", "hub_id")
"""What a weights or checkpoint option (--weights, --resume, --ply, --ckpt...) is tried with."""
IMAGE_KINDS = ("missing", "empty_image", "text_as_image", "random_image", "truncated_jpeg")
"""What an image option (--image, --mask, --control, --input) is tried with."""


class _Payload:
    """Unpickling this creates the PWNED file: proof that code from the file ran."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def make_bad_files(folder: Path) -> dict[str, Path]:
    from PIL import Image
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    pwned = folder / PWNED
    files: dict[str, Path] = {"missing": folder / "no_such_file.safetensors"}
    (folder / "empty.safetensors").write_bytes(b"")
    files["empty"] = folder / "empty.safetensors"
    net = torch.nn.Linear(3, 2)
    save_file(dict(net.state_dict()), str(folder / "full.safetensors"))
    data = (folder / "full.safetensors").read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    files["truncated_safetensors"] = folder / "truncated.safetensors"
    rng = __import__("random").Random(0)
    (folder / "random.pt").write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    files["random_bytes"] = folder / "random.pt"
    torch.save(net.state_dict(), folder / "other_model.pt")  # a real checkpoint, of something else
    files["wrong_model"] = folder / "other_model.pt"
    with open(folder / "evil.pkl", "wb") as f:
        pickle.dump({"state_dict": {"w": torch.zeros(2)}, "x": _Payload(pwned)}, f)
    files["evil_pkl"] = folder / "evil.pkl"
    for suffix in ("pt", "ckpt", "bin"):
        torch.save({"state_dict": net.state_dict(), "x": _Payload(pwned)}, folder / f"evil.{suffix}")
        files[f"evil_{suffix}"] = folder / f"evil.{suffix}"
    files["hub_id"] = Path("cv-generative-tests/no-such-repo")  # a hub id: offline in the tests
    # images
    (folder / "empty.png").write_bytes(b"")
    files["empty_image"] = folder / "empty.png"
    (folder / "notes.png").write_text("this is text, not an image\n")
    files["text_as_image"] = folder / "notes.png"
    (folder / "noise.png").write_bytes(bytes(rng.randrange(256) for _ in range(2048)))
    files["random_image"] = folder / "noise.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "ok.jpg", quality=90)
    jpg = (folder / "ok.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    files["truncated_jpeg"] = folder / "truncated.jpg"
    Image.new("RGB", (32, 32), (10, 120, 200)).save(folder / "ok.png")
    files["ok_image"] = folder / "ok.png"
    (folder / "a_file").write_text("a file where a folder is expected\n")
    files["file_in_the_way"] = folder / "a_file"
    os.utime(folder, None)
    return files


__all__ = ["IMAGE_KINDS", "PWNED", "WEIGHT_KINDS", "make_bad_files"]
