"""Reader (and writer, for tests and exports) of COLMAP sparse models, binary and text.

    scene/images/...                     the photos (images_2/, images_4/... when pre-shrunk)
    scene/sparse/0/cameras.{bin,txt}     intrinsics: PINHOLE, SIMPLE_PINHOLE, OPENCV (+ radial kinds)
    scene/sparse/0/images.{bin,txt}      world-to-camera pose (qw qx qy qz, t) per image, OpenCV axes
    scene/sparse/0/points3D.{bin,txt}    the sparse point cloud with colours

COLMAP poses are already world-to-camera in OpenCV axes, the convention of
`utils.rendering.cameras`. Lens distortion is not modelled by the rasterizer: distorted models
(OPENCV, SIMPLE_RADIAL...) load as their pinhole part, so run `colmap image_undistorter` first
for exact results.
"""
from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.data.nerf_synthetic import PosedImages, load_image
from utils.errors import UserError, parsing
from utils.rendering.cameras import Cameras

__all__ = ["ColmapCamera", "ColmapImage", "read_colmap_model", "write_colmap_model", "load_colmap",
           "is_colmap", "qvec_to_rotmat", "CAMERA_MODELS"]

# model id -> (name, number of parameters), as numbered by COLMAP
CAMERA_MODELS = {0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5),
                 4: ("OPENCV", 8), 5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5),
                 8: ("SIMPLE_RADIAL_FISHEYE", 4), 9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12)}
_MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
_SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray

    def intrinsics(self) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy of the pinhole part."""
        p = self.params
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            return float(p[0]), float(p[0]), float(p[1]), float(p[2])
        if self.model in ("PINHOLE", "OPENCV"):
            return float(p[0]), float(p[1]), float(p[2]), float(p[3])
        raise UserError(f"COLMAP camera model {self.model} is not supported: use one of {', '.join(_SUPPORTED)} "
                        "(colmap image_undistorter writes PINHOLE cameras)")

    @property
    def distorted(self) -> bool:
        return self.model not in ("SIMPLE_PINHOLE", "PINHOLE") and bool(np.any(self.params[3 if self.model.startswith("SIMPLE") or self.model == "RADIAL" else 4:] != 0))


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray
    """World-to-camera rotation as a quaternion w x y z."""
    tvec: np.ndarray
    """World-to-camera translation."""
    camera_id: int
    name: str


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


# -- binary -------------------------------------------------------------------------------------
def _read(f, fmt: str):
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) < size:
        raise UserError(f"{f.name} is truncated: the COLMAP model is incomplete")
    return struct.unpack("<" + fmt, data)


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            cid, model_id, w, h = _read(f, "iiQQ")
            if model_id not in CAMERA_MODELS:
                raise UserError(f"{path}: unknown COLMAP camera model id {model_id}")
            name, n_params = CAMERA_MODELS[model_id]
            cams[cid] = ColmapCamera(cid, name, int(w), int(h), np.array(_read(f, "d" * n_params)))
    return cams


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    images = {}
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            iid, qw, qx, qy, qz, tx, ty, tz, cid = _read(f, "idddddddi")
            name = b""
            while (ch := f.read(1)) not in (b"\x00", b""):
                name += ch
            (n2d,) = _read(f, "Q")
            f.seek(24 * n2d, 1)  # x, y (double) and point3D id (int64) per keypoint: unused here
            images[iid] = ColmapImage(iid, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), cid,
                                      name.decode("utf-8"))
    return images


def _read_points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    with open(path, "rb") as f:
        (n,) = _read(f, "Q")
        for _ in range(n):
            _, x, y, z, r, g, b, _, track = _read(f, "QdddBBBdQ")
            f.seek(8 * track, 1)  # (image id, keypoint index) int32 pairs
            xyz.append((x, y, z))
            rgb.append((r, g, b))
    return np.array(xyz, dtype=np.float64).reshape(-1, 3), np.array(rgb, dtype=np.uint8).reshape(-1, 3)


# -- text ---------------------------------------------------------------------------------------
def _lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cams = {}
    for ln in _lines(path):
        w = ln.split()
        cam = ColmapCamera(int(w[0]), w[1], int(w[2]), int(w[3]), np.array([float(x) for x in w[4:]]))
        if cam.model not in _MODEL_IDS:
            raise ValueError(f"unknown camera model '{cam.model}' on line '{ln[:60]}'")
        if len(cam.params) != _MODEL_IDS[cam.model][1] or cam.width < 1 or cam.height < 1:
            raise ValueError(f"camera {cam.id} ({cam.model}) needs a positive size and {_MODEL_IDS[cam.model][1]} "
                             f"parameters, got '{ln[:60]}'")
        cams[cam.id] = cam
    return cams


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    images = {}
    # two lines per image; the second (keypoints) may be empty, so split on raw lines
    raw = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    i = 0
    while i < len(raw):
        if not raw[i].strip():
            i += 1
            continue
        w = raw[i].split()
        iid = int(w[0])
        images[iid] = ColmapImage(iid, np.array([float(x) for x in w[1:5]]), np.array([float(x) for x in w[5:8]]),
                                  int(w[8]), " ".join(w[9:]))
        i += 2
    return images


def _read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for ln in _lines(path):
        w = ln.split()
        xyz.append([float(x) for x in w[1:4]])
        rgb.append([int(x) for x in w[4:7]])
    return np.array(xyz, dtype=np.float64).reshape(-1, 3), np.array(rgb, dtype=np.uint8).reshape(-1, 3)


def read_colmap_model(sparse_dir: str | Path):
    """(cameras, images, points xyz, points rgb) of a sparse model folder, .bin preferred."""
    d = Path(sparse_dir)
    if (d / "cameras.bin").is_file():
        with parsing(d / "cameras.bin", "COLMAP cameras file"):
            cams = _read_cameras_bin(d / "cameras.bin")
        with parsing(d / "images.bin", "COLMAP images file"):
            ims = _read_images_bin(d / "images.bin")
        with parsing(d / "points3D.bin", "COLMAP points file"):
            pts = (_read_points_bin(d / "points3D.bin") if (d / "points3D.bin").is_file()
                   else (np.zeros((0, 3)),) * 2)
    elif (d / "cameras.txt").is_file():
        with parsing(d / "cameras.txt", "COLMAP cameras file", "one line per camera: CAMERA_ID MODEL WIDTH HEIGHT "
                                                               "PARAMS..."):
            cams = _read_cameras_txt(d / "cameras.txt")
        with parsing(d / "images.txt", "COLMAP images file", "two lines per image: IMAGE_ID QW QX QY QZ TX TY TZ "
                                                             "CAMERA_ID NAME, then its keypoints"):
            ims = _read_images_txt(d / "images.txt")
        with parsing(d / "points3D.txt", "COLMAP points file", "POINT3D_ID X Y Z R G B ERROR TRACK..."):
            pts = (_read_points_txt(d / "points3D.txt") if (d / "points3D.txt").is_file()
                   else (np.zeros((0, 3)),) * 2)
    else:
        raise UserError(f"no COLMAP model in {d}: expected cameras.bin/images.bin/points3D.bin or the .txt files")
    return cams, ims, pts[0], pts[1]


def write_colmap_model(sparse_dir: str | Path, cameras: dict[int, ColmapCamera], images: dict[int, ColmapImage],
                       xyz: np.ndarray, rgb: np.ndarray, binary: bool = True) -> Path:
    """Write a sparse model (no keypoints or tracks), in COLMAP's binary or text format."""
    d = Path(sparse_dir)
    d.mkdir(parents=True, exist_ok=True)
    if binary:
        with open(d / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", len(cameras)))
            for c in cameras.values():
                f.write(struct.pack("<iiQQ", c.id, _MODEL_IDS[c.model][0], c.width, c.height))
                f.write(struct.pack("<" + "d" * len(c.params), *c.params))
        with open(d / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(images)))
            for im in images.values():
                f.write(struct.pack("<idddddddi", im.id, *im.qvec, *im.tvec, im.camera_id))
                f.write(im.name.encode("utf-8") + b"\x00")
                f.write(struct.pack("<Q", 0))
        with open(d / "points3D.bin", "wb") as f:
            f.write(struct.pack("<Q", len(xyz)))
            for i, (p, c) in enumerate(zip(xyz, rgb)):
                f.write(struct.pack("<QdddBBBdQ", i + 1, *p, *c, 0.0, 0))
    else:
        (d / "cameras.txt").write_text("# Camera list\n" + "".join(
            f"{c.id} {c.model} {c.width} {c.height} {' '.join(repr(float(x)) for x in c.params)}\n"
            for c in cameras.values()))
        (d / "images.txt").write_text("# Image list\n" + "".join(
            f"{im.id} {' '.join(repr(float(x)) for x in im.qvec)} {' '.join(repr(float(x)) for x in im.tvec)} "
            f"{im.camera_id} {im.name}\n\n" for im in images.values()))
        (d / "points3D.txt").write_text("# 3D point list\n" + "".join(
            f"{i + 1} {float(p[0])!r} {float(p[1])!r} {float(p[2])!r} {int(c[0])} {int(c[1])} {int(c[2])} 0.0\n" for i, (p, c) in enumerate(zip(xyz, rgb))))
    return d


def _find_sparse(root: Path) -> Path | None:
    for cand in (root / "sparse" / "0", root / "sparse", root):
        if (cand / "cameras.bin").is_file() or (cand / "cameras.txt").is_file():
            return cand
    return None


def is_colmap(root: str | Path) -> bool:
    return _find_sparse(Path(root)) is not None


def load_colmap(root: str | Path, split: str = "train", downscale: int = 1, test_every: int = 8,
                images_dir: str = "images") -> PosedImages:
    """Load a COLMAP scene. Images sorted by name; every `test_every`-th is the test split (the
    3DGS convention; `split='all'` takes every image). Intrinsics follow `downscale`; a folder
    `images_{downscale}` is used when present, else the full images are shrunk on load."""
    root = Path(root)
    sparse = _find_sparse(root)
    if sparse is None:
        raise UserError(f"{root} holds no COLMAP model (sparse/0/cameras.bin or .txt): run COLMAP first, or pass "
                        "a NeRF-synthetic folder with transforms_train.json")
    cams, ims, xyz, rgb = read_colmap_model(sparse)
    ordered = sorted(ims.values(), key=lambda im: im.name)
    if split == "train":
        ordered = [im for i, im in enumerate(ordered) if test_every <= 0 or i % test_every != 0]
    elif split == "test":
        ordered = [im for i, im in enumerate(ordered) if test_every > 0 and i % test_every == 0]
    elif split != "all":
        raise UserError(f"unknown split '{split}': use train, test or all")
    pre_shrunk = root / f"{images_dir}_{downscale}"
    img_dir, shrink = (pre_shrunk, 1) if downscale > 1 and pre_shrunk.is_dir() else (root / images_dir, downscale)
    images, viewmats, Ks, names = [], [], [], []
    warned = False
    for im in ordered:
        cam = cams[im.camera_id]
        if cam.distorted and not warned:
            warnings.warn(f"COLMAP camera {cam.id} ({cam.model}) has lens distortion, which is ignored: "
                          "undistort the images with colmap image_undistorter for exact results", stacklevel=2)
            warned = True
        path = img_dir / im.name
        if not path.is_file():
            raise UserError(f"image {path} of the COLMAP model is missing: check the images folder")
        img = load_image(path, shrink, (1.0, 1.0, 1.0))
        h, w = img.shape[:2]
        fx, fy, cx, cy = cam.intrinsics()
        sx, sy = w / cam.width, h / cam.height
        Ks.append([[fx * sx, 0, cx * sx], [0, fy * sy, cy * sy], [0, 0, 1]])
        vm = np.eye(4)
        vm[:3, :3], vm[:3, 3] = qvec_to_rotmat(im.qvec), im.tvec
        viewmats.append(vm)
        images.append(img)
        names.append(im.name)
    if not images:
        raise UserError(f"the COLMAP model in {sparse} has no images for split '{split}'")
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        raise UserError(f"images of {root} differ in size {sorted(sizes)[:3]}: one image size per scene is supported")
    h, w = images[0].shape[:2]
    cameras = Cameras(torch.tensor(np.stack(viewmats), dtype=torch.float32), torch.tensor(Ks, dtype=torch.float32),
                      w, h)
    return PosedImages(torch.from_numpy(np.stack(images)), cameras, names,
                       points=torch.tensor(xyz, dtype=torch.float32),
                       point_colors=torch.tensor(rgb, dtype=torch.float32) / 255.0)
