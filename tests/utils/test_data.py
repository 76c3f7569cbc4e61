"""utils.data: image folders (captions, labels), augmentations, seeded loaders, get_dataset."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.data.augmentations import ImageTransform, as_hw, center_crop, hflip, resize_to_cover, to_tensor
from utils.data.datasets import available_datasets, get_dataset
from utils.data.image_folder import ImageFolderDataset
from utils.data.loaders import collate, make_loader
from utils.errors import UserError

RED, GREEN, BLUE, BLACK, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0), (255, 255, 255)


def save(path: Path, size: tuple[int, int] = (8, 8), color=RED, mode: str = "RGB", **kw) -> Path:
    """Write a solid image of `size` (w, h) at `path`, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, **kw)
    return path


def stripes(path: Path, colors: list[tuple[int, int, int]], width: int = 10, height: int = 10) -> Path:
    """Vertical stripes, each `width` px wide, left to right."""
    img = Image.new("RGB", (width * len(colors), height))
    for i, c in enumerate(colors):
        img.paste(c, (i * width, 0, (i + 1) * width, height))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def rgb(color) -> torch.Tensor:
    return torch.tensor(color, dtype=torch.float32) / 127.5 - 1


@contextmanager
def one_line(*fragments: str) -> Iterator[None]:
    with pytest.raises(UserError) as info:
        yield
    msg = str(info.value)
    assert "\n" not in msg and msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


# -- finding images -------------------------------------------------------------------------------


def test_reads_every_format_recursively(tmp_path):
    for name in ("a.png", "b.jpg", "sub/c.jpeg", "sub/deeper/d.webp", "e.bmp", "F.PNG"):
        save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "meta.json").write_text("{}")
    save(tmp_path / ".thumbs" / "hidden.png")  # hidden folders (caches, checkpoints) are skipped
    save(tmp_path / ".hidden.png")
    ds = ImageFolderDataset(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in map(str, ds.paths)] == \
        ["F.PNG", "a.png", "b.jpg", "e.bmp", "sub/c.jpeg", "sub/deeper/d.webp"]
    assert len(ds) == 6


def test_item_format_and_values(tmp_path):
    save(tmp_path / "red.png", (6, 4), RED)
    save(tmp_path / "gray.png", (6, 4), 128, mode="L")
    save(tmp_path / "alpha.png", (6, 4), (0, 0, 255, 0), mode="RGBA")
    ds = ImageFolderDataset(tmp_path)
    items = {Path(ds[i]["path"]).name: ds[i] for i in range(len(ds))}
    red = items["red.png"]
    assert set(red) == {"image", "caption", "label", "path"}
    assert red["image"].shape == (3, 4, 6) and red["image"].dtype == torch.float32
    assert torch.equal(red["image"], rgb(RED)[:, None, None].expand(3, 4, 6))
    assert red["caption"] is None and red["label"] is None
    assert items["gray.png"]["image"].shape == (3, 4, 6)  # grayscale and RGBA become RGB
    assert torch.allclose(items["gray.png"]["image"], torch.full((3, 4, 6), 128 / 127.5 - 1), atol=1e-6)
    assert torch.equal(items["alpha.png"]["image"], rgb(BLUE)[:, None, None].expand(3, 4, 6))


def test_jpeg_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), RED)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "phone.jpg", exif=exif)
    assert ImageFolderDataset(tmp_path)[0]["image"].shape == (3, 20, 10)


# -- resizing, cropping, flipping -----------------------------------------------------------------


@pytest.mark.parametrize("size, shape", [(16, (3, 16, 16)), ((8, 12), (3, 8, 12)), (None, (3, 20, 40))])
def test_size(tmp_path, size, shape):
    save(tmp_path / "wide.png", (40, 20))
    assert ImageFolderDataset(tmp_path, size=size)[0]["image"].shape == shape


def test_center_crop_keeps_the_middle(tmp_path):
    stripes(tmp_path / "rgb.png", [RED, GREEN, BLUE])  # 30 x 10: the middle square is green
    x = ImageFolderDataset(tmp_path, size=10)[0]["image"]
    assert torch.equal(x, rgb(GREEN)[:, None, None].expand(3, 10, 10))
    small = ImageFolderDataset(tmp_path, size=5)[0]["image"]  # shrunk to 15 x 5 first, then cropped
    assert small.shape == (3, 5, 5)
    assert torch.allclose(small[:, :, 2], rgb(GREEN)[:, None].expand(3, 5), atol=0.05)


def test_random_crop_moves(tmp_path):
    stripes(tmp_path / "rgb.png", [RED, GREEN, BLUE])
    ds = ImageFolderDataset(tmp_path, size=10, center_crop=False)
    torch.manual_seed(0)
    rows = {tuple(ds[0]["image"][0, 0].tolist()) for _ in range(40)}  # red channel of the top row
    assert len(rows) > 5  # the 10 px window lands at many of its 21 offsets in the 30 px image
    torch.manual_seed(1)
    a = [ds[0]["image"] for _ in range(5)]
    torch.manual_seed(1)
    b = [ds[0]["image"] for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # drawn from torch's seeded RNG


def test_random_flip(tmp_path):
    stripes(tmp_path / "bw.png", [BLACK, WHITE])
    plain = ImageFolderDataset(tmp_path)[0]["image"]
    assert all(torch.equal(ImageFolderDataset(tmp_path)[0]["image"], plain) for _ in range(5))
    ds = ImageFolderDataset(tmp_path, random_flip=True)
    torch.manual_seed(0)
    seen = [ds[0]["image"] for _ in range(30)]
    flipped = [x for x in seen if torch.equal(x, plain.flip(-1))]
    unflipped = [x for x in seen if torch.equal(x, plain)]
    assert flipped and unflipped and len(flipped) + len(unflipped) == 30


def test_transform_pieces():
    assert as_hw(5) == (5, 5) and as_hw((2, 3)) == (2, 3)
    with pytest.raises(ValueError):
        as_hw(0)
    img = Image.new("RGB", (30, 10))
    assert resize_to_cover(img, 20).size == (60, 20)
    assert resize_to_cover(img, (5, 3)).size == (15, 5)
    assert center_crop(resize_to_cover(img, (4, 9)), (4, 9)).size == (9, 4)
    assert hflip(stripes_img([BLACK, WHITE])).getpixel((0, 0)) == WHITE
    x = to_tensor(Image.new("RGB", (2, 1), (0, 255, 51)))
    assert x.shape == (3, 1, 2) and x[:, 0, 0].tolist() == pytest.approx([-1.0, 1.0, -0.6])
    assert ImageTransform(size=4)(img).shape == (3, 4, 4)


def stripes_img(colors) -> Image.Image:
    img = Image.new("RGB", (len(colors), 1))
    for i, c in enumerate(colors):
        img.putpixel((i, 0), c)
    return img


def test_no_torchvision_at_runtime(tmp_path, monkeypatch):
    import ast

    import utils.data

    for name in ("augmentations", "image_folder", "loaders", "datasets"):
        tree = ast.parse((Path(utils.data.__file__).parent / f"{name}.py").read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] == "torchvision" for m in imported), name
    monkeypatch.setitem(sys.modules, "torchvision", None)  # any lazy import of it now fails
    save(tmp_path / "a.png")
    batch = next(iter(make_loader(get_dataset(tmp_path, size=4, random_flip=True, center_crop=False), 1)))
    assert batch["image"].shape == (1, 3, 4, 4)


# -- captions -------------------------------------------------------------------------------------


def test_captions_from_sidecar_and_metadata(tmp_path):
    save(tmp_path / "cat.png")
    (tmp_path / "cat.txt").write_text("a cat on a mat\n")
    save(tmp_path / "dog.png")
    save(tmp_path / "bird.png")
    (tmp_path / "bird.txt").write_text("sidecar loses to metadata")
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file_name": "dog.png", "text": "a dog"}) + "\n\n"
        + json.dumps({"file_name": "bird.png", "text": "a bird", "other": 3}) + "\n")
    save(tmp_path / "sub" / "fish.jpg")
    save(tmp_path / "sub" / "plain.jpg")
    (tmp_path / "sub" / "metadata.jsonl").write_text(json.dumps({"file_name": "fish.jpg", "caption": "a fish"}))
    ds = ImageFolderDataset(tmp_path)
    got = {Path(ds[i]["path"]).name: ds[i]["caption"] for i in range(len(ds))}
    assert got == {"cat.png": "a cat on a mat", "dog.png": "a dog", "bird.png": "a bird",
                   "fish.jpg": "a fish", "plain.jpg": None}
    off = ImageFolderDataset(tmp_path, captions=False)
    assert all(off[i]["caption"] is None for i in range(len(off)))


def test_caption_column_and_nested_file_names(tmp_path):
    save(tmp_path / "train" / "x.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "train/x.png", "text": "t", "prompt": "p"}))
    assert ImageFolderDataset(tmp_path)[0]["caption"] == "t"
    assert ImageFolderDataset(tmp_path, caption_column="prompt")[0]["caption"] == "p"


def test_metadata_naming_a_missing_file(tmp_path):
    save(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "ok"}) + "\n"
                                             + json.dumps({"file_name": "gone.png", "text": "?"}) + "\n")
    with one_line("metadata.jsonl:2", "gone.png", "does not exist"):
        ImageFolderDataset(tmp_path)
    assert ImageFolderDataset(tmp_path, captions=False)[0]["caption"] is None  # metadata unread without captions


@pytest.mark.parametrize("line, frag", [("{not json", "not valid JSON"), ('{"text": "no name"}', "no 'file_name'"),
                                        ('["a.png"]', "no 'file_name'")])
def test_bad_metadata_lines(tmp_path, line, frag):
    save(tmp_path / "a.png")
    (tmp_path / "metadata.jsonl").write_text(line + "\n")
    with one_line("metadata.jsonl:1", frag):
        ImageFolderDataset(tmp_path)


# -- class labels ---------------------------------------------------------------------------------


def test_class_labels_from_first_level_folders(tmp_path):
    save(tmp_path / "dog" / "1.png")
    save(tmp_path / "cat" / "1.png")
    save(tmp_path / "cat" / "kittens" / "2.png")  # deeper images keep their first-level class
    ds = ImageFolderDataset(tmp_path, class_labels=True)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2
    got = {Path(ds[i]["path"]).relative_to(tmp_path).as_posix(): ds[i]["label"] for i in range(len(ds))}
    assert got == {"cat/1.png": 0, "cat/kittens/2.png": 0, "dog/1.png": 1}
    assert ImageFolderDataset(tmp_path)[0]["label"] is None


def test_class_labels_need_subfolders(tmp_path):
    save(tmp_path / "cat" / "1.png")
    save(tmp_path / "loose.png")
    with one_line("loose.png", "first-level subfolders"):
        ImageFolderDataset(tmp_path, class_labels=True)


# -- user mistakes --------------------------------------------------------------------------------


def test_missing_empty_and_file_roots(tmp_path):
    with one_line("image folder not found", "nope"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with one_line("no images in", "empty", ".png"):
        ImageFolderDataset(tmp_path / "empty")
    save(tmp_path / "one.png")
    with one_line("is a file, not a folder"):
        ImageFolderDataset(tmp_path / "one.png")


def test_corrupt_image(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with one_line("broken.png", "none of the 1 images"):  # every file is decoded when the dataset is made
        ImageFolderDataset(tmp_path)
    ds = ImageFolderDataset(tmp_path, verify=False)  # without the check, the file is read on access
    with one_line("broken.png", "corrupt"):
        ds[0]


def test_unreadable_images_are_skipped_with_a_count_before_any_step(tmp_path, capsys):
    """The documented choice (docs/errors.md): a folder with some corrupt files trains on the rest, and
    says so once; every file is decoded when the dataset is made, not when a sampler reaches it."""
    for i in range(3):
        save(tmp_path / f"ok{i}.png", color=(i * 40, 0, 0))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    jpg = save(tmp_path / "full.jpg", size=(32, 32)).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    ds = ImageFolderDataset(tmp_path, size=8)
    err = capsys.readouterr().err
    assert len(ds) == 4 and {p.name for p, _ in ds.skipped} == {"broken.png", "cut.jpg"}
    assert err.count("\n") == 1 and "skipped 2 of 6 images" in err and "broken.png" in err, err
    assert all(ds[i]["image"].shape == (3, 8, 8) for i in range(len(ds)))  # every kept file reads


# -- loaders --------------------------------------------------------------------------------------


class Numbers(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.full((1, 2, 2), float(i)), "label": i, "caption": None if i % 2 else f"#{i}"}


def order(loader) -> list[int]:
    return [i for batch in loader for i in batch["label"].tolist()]


def test_seeded_order_is_reproducible():
    ds = Numbers(20)
    a, b = make_loader(ds, 4, shuffle=True, seed=3), make_loader(ds, 4, shuffle=True, seed=3)
    first_a, first_b = order(a), order(b)
    assert first_a == first_b and sorted(first_a) == list(range(20))
    assert first_a != list(range(20))
    c, d = make_loader(ds, 4, shuffle=True, seed=3), make_loader(ds, 4, shuffle=True, seed=3)
    epochs_c = [order(c) for _ in range(3)]
    epochs_d = [order(d) for _ in range(3)]
    assert epochs_c == epochs_d  # the same sequence of epochs
    assert epochs_c[0] != epochs_c[1]  # a new order each epoch
    assert order(make_loader(ds, 4, shuffle=True, seed=4)) != epochs_c[0]
    assert order(make_loader(ds, 4, shuffle=False, seed=3)) == list(range(20))


def test_collate_and_drop_last():
    batches = list(make_loader(Numbers(5), 2, shuffle=False, drop_last=True))
    assert len(batches) == 2
    first = batches[0]
    assert first["image"].shape == (2, 1, 2, 2)
    assert first["label"].dtype == torch.long and first["label"].tolist() == [0, 1]
    assert first["caption"] == ["#0", None]
    assert len(list(make_loader(Numbers(5), 2, shuffle=False))) == 3
    assert collate([{"path": "a", "flag": True}])["flag"] == [True]


def test_image_folder_batches_with_missing_captions(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", (12, 10))
    (tmp_path / "0.txt").write_text("zero")
    batch = next(iter(make_loader(ImageFolderDataset(tmp_path, size=8), 3, shuffle=False)))
    assert batch["image"].shape == (3, 3, 8, 8)
    assert batch["caption"] == ["zero", None, None] and batch["label"] == [None, None, None]
    assert [Path(p).name for p in batch["path"]] == ["0.png", "1.png", "2.png"]


def test_worker_augmentations_follow_the_seed(tmp_path):
    stripes(tmp_path / "bw.png", [BLACK, WHITE])
    for i in range(1, 8):
        stripes(tmp_path / f"bw{i}.png", [BLACK, WHITE])
    ds = ImageFolderDataset(tmp_path, random_flip=True)

    def flips(seed: int) -> list[bool]:
        loader = make_loader(ds, 8, shuffle=False, seed=seed, num_workers=1)
        return [bool(x[0, 0, 0] > 0) for x in next(iter(loader))["image"]]

    a = flips(0)
    assert a == flips(0)
    assert any(flips(s) != a for s in (1, 2, 3))


# -- get_dataset ----------------------------------------------------------------------------------


def test_get_dataset_folder(tmp_path):
    save(tmp_path / "cat" / "a.png", (20, 10))
    ds = get_dataset(str(tmp_path), size=8, class_labels=True)
    assert isinstance(ds, ImageFolderDataset)
    assert ds[0]["image"].shape == (3, 8, 8) and ds[0]["label"] == 0
    assert isinstance(get_dataset(tmp_path), ImageFolderDataset)
    with one_line("has no option", "split"):
        get_dataset(tmp_path, split="test")


def test_get_dataset_digits():
    import sklearn  # noqa: F401 - a hard dependency: a broken install fails here
    from utils.data.digits import DigitsDataset

    ds = get_dataset("digits")
    assert isinstance(ds, DigitsDataset) and ds[0]["image"].shape == (1, 32, 32)
    test = get_dataset("digits", size=16, split="test")
    assert test[0]["image"].shape == (1, 16, 16) and len(test) < len(ds)
    assert -1 <= float(test[0]["image"].min()) and float(test[0]["image"].max()) <= 1
    with one_line("digits dataset has no option random_flip"):
        get_dataset("digits", random_flip=True)


def test_get_dataset_unknown(tmp_path):
    assert "digits" in available_datasets()
    with one_line("unknown dataset 'digts'", "did you mean: digits"):
        get_dataset("digts")
    with one_line("unknown dataset", str(tmp_path / "nowhere"), "digits"):
        get_dataset(tmp_path / "nowhere")
    save(tmp_path / "a.png")
    with one_line("is a file", "digits"):
        get_dataset(tmp_path / "a.png")
