"""A differentiable triangle-mesh rasterizer: triangle ids, barycentrics, depth test, attribute
interpolation, and a soft silhouette whose gradients reach the vertices.

The calls and outputs follow nvdiffrast's conventions, so that `backend="nvdiffrast"` (used by
default on CUDA when the package is installed) and the pure-PyTorch backend are interchangeable:

- `rasterize(pos, tris, (H, W))`: `pos` (B, V, 4) clip-space vertices (or (V, 4) for one batch
  entry), `tris` (F, 3). Returns `rast` (B, H, W, 4) = (u, v, z/w, triangle id + 1), 0 where no
  triangle covers the pixel. (u, v) are the perspective-correct barycentric weights of the
  triangle's vertices 0 and 1 (vertex 2 gets 1 - u - v); z/w is the depth in normalised device
  coordinates. Pixel (row j, column i) samples NDC x = 2 (i + 1/2) / W - 1, y = 2 (j + 1/2) / H - 1:
  row 0 is at y = -1 (OpenGL's bottom-up image order, nvdiffrast's too). The nearest triangle
  (smallest z/w in [-1, 1]) wins; ties go to the lower triangle id.
- `interpolate(attr, rast, tris)`: vertex attributes (B or 1, V, C) or (V, C) at each pixel,
  (B, H, W, C), zero on empty pixels.

Gradients flow from (u, v, z/w) to `pos` (and from the interpolated attributes to `attr` and,
through (u, v), to `pos`), but a hard rasterizer has no gradient for which triangle covers a pixel.
`soft_silhouette(pos, tris, (H, W), sigma)` supplies one: every triangle covers each pixel with
probability sigmoid(+-d^2 / sigma) (d the pixel's distance in pixels to the triangle's screen
projection, + inside, - outside) and the pixel's coverage is 1 - prod(1 - p) over triangles
(SoftRas' silhouette). As sigma -> 0 it tends to the hard coverage.

`clip_from_cameras(verts, cameras, near, far)` takes world-space vertices to clip space for the house's
pinhole `Cameras` (utils/rendering/cameras.py: OpenCV axes, intrinsics in pixels), so that raster row j
and column i are the camera image's pixel (i, j), row 0 at the top, and z/w runs from -1 at `near` to
1 at `far`.

The PyTorch backend lists, for every triangle, the pixels of its screen bounding box (in chunks, so
memory stays bounded) and tests them: cost is the sum of the triangles' bounding-box areas, not
pixels x triangles. Triangles with a vertex at w <= 0 (behind the eye) are skipped rather than
clipped, which differs from nvdiffrast only for triangles that cross the eye plane.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from utils.errors import UserError

__all__ = ["MAX_PAIRS", "clip_from_cameras", "interpolate", "nvdiffrast_available", "rasterize", "soft_silhouette"]

MAX_PAIRS = 1 << 22
"""(triangle, pixel) candidates tested at once by the PyTorch backend; larger meshes go in chunks."""


def nvdiffrast_available() -> bool:
    """True when the nvdiffrast package is importable (it still needs CUDA to run)."""
    return importlib.util.find_spec("nvdiffrast") is not None


def _backend(name: str, device: torch.device) -> str:
    if name == "auto":
        return "nvdiffrast" if device.type == "cuda" and nvdiffrast_available() else "torch"
    if name == "nvdiffrast" and not (device.type == "cuda" and nvdiffrast_available()):
        raise UserError("the nvdiffrast mesh rasterizer needs the nvdiffrast package and a CUDA device; "
                        "install nvdiffrast (github.com/NVlabs/nvdiffrast) or use backend='torch'")
    if name not in ("torch", "nvdiffrast"):
        raise UserError(f"unknown mesh rasterizer backend {name!r}; choose 'auto', 'torch' or 'nvdiffrast'")
    return name


_NVDR_CONTEXTS: dict = {}


def _nvdr():
    import nvdiffrast.torch as dr
    return dr


def _check(pos: Tensor, tris: Tensor, resolution) -> tuple[Tensor, Tensor, int, int]:
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    if pos.dim() != 3 or pos.shape[-1] != 4:
        raise UserError(f"rasterize needs clip-space vertices of shape (B, V, 4) or (V, 4), got {tuple(pos.shape)}")
    if tris.dim() != 2 or tris.shape[-1] != 3:
        raise UserError(f"rasterize needs triangles of shape (F, 3), got {tuple(tris.shape)}")
    h, w = (resolution, resolution) if isinstance(resolution, int) else (int(resolution[0]), int(resolution[1]))
    if h < 1 or w < 1:
        raise UserError(f"rasterize needs a resolution of at least 1x1, got {h}x{w}")
    return pos, tris.long(), h, w


def _screen(pos: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Pixel-space (x, y) with pixel centres at integer + 1/2, and z/w, of clip-space vertices."""
    inv_w = 1.0 / pos[..., 3]
    x = (pos[..., 0] * inv_w + 1) * (w / 2)
    y = (pos[..., 1] * inv_w + 1) * (h / 2)
    return torch.stack([x, y], -1), pos[..., 2] * inv_w


def _candidates(xy: Tensor, ok: Tensor, h: int, w: int, margin: float = 0.0):
    """(triangle, pixel) pairs of every usable triangle's pixel bounding box, in chunks.

    `xy` (F, 3, 2) screen vertices. Yields (tri index (P,), pixel x index (P,), pixel y index (P,)).
    """
    lo = (xy.min(1).values - 0.5 - margin).ceil().clamp(min=0)
    hi = (xy.max(1).values - 0.5 + margin).floor()
    hi = torch.minimum(hi, torch.tensor([w - 1, h - 1], device=xy.device, dtype=xy.dtype))
    size = (hi - lo + 1).clamp(min=0).long()
    count = torch.where(ok, size[:, 0] * size[:, 1], torch.zeros_like(size[:, 0]))
    tri_ids = torch.nonzero(count > 0).squeeze(-1)
    if tri_ids.numel() == 0:
        return
    count, lo, size = count[tri_ids], lo[tri_ids].long(), size[tri_ids]
    ends = count.cumsum(0)
    start = 0
    while start < len(tri_ids):
        base = int(ends[start - 1]) if start else 0
        stop = int(torch.searchsorted(ends, base + MAX_PAIRS, right=True))
        stop = max(stop, start + 1)
        c = count[start:stop]
        which = torch.repeat_interleave(torch.arange(start, stop, device=xy.device), c)
        offset = torch.arange(int(c.sum()), device=xy.device) + base - torch.repeat_interleave(ends[start:stop] - c, c)
        sx = size[which, 0]
        yield tri_ids[which], lo[which, 0] + offset % sx, lo[which, 1] + offset // sx
        start = stop


def _edge_functions(xy: Tensor, px: Tensor, py: Tensor) -> tuple[Tensor, Tensor]:
    """Screen-space barycentrics (P, 3) of pixel centres in triangles `xy` (P, 3, 2), and twice the signed area."""
    a, b, c = xy[:, 0], xy[:, 1], xy[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    cx, cy = px + 0.5, py + 0.5

    def edge(p, q):  # twice the signed area of (p, q, pixel)
        return (q[:, 0] - p[:, 0]) * (cy - p[:, 1]) - (q[:, 1] - p[:, 1]) * (cx - p[:, 0])

    lam = torch.stack([edge(b, c), edge(c, a), edge(a, b)], -1) / area.unsqueeze(-1)
    return lam, area


def _rasterize_torch(pos: Tensor, tris: Tensor, h: int, w: int) -> Tensor:
    bsz, n_pix = pos.shape[0], h * w
    rast = []
    for bi in range(bsz):
        p = pos[bi]
        with torch.no_grad():
            xy, zw = _screen(p.detach(), h, w)
            txy = xy[tris]
            ok = (p.detach()[tris, 3] > 0).all(-1) & torch.isfinite(txy).all(-1).all(-1)
            best = torch.full((n_pix,), float("inf"), device=p.device, dtype=p.dtype)
            none = torch.iinfo(torch.long).max
            winner = torch.full((n_pix,), none, dtype=torch.long, device=p.device)
            found = []
            for t, px, py in _candidates(txy, ok, h, w):
                lam, area = _edge_functions(txy[t], px, py)
                inside = (lam >= 0).all(-1) & (area != 0)
                t, px, py, lam = t[inside], px[inside], py[inside], lam[inside]
                depth = (lam * zw[tris[t]]).sum(-1)
                keep = (depth >= -1) & (depth <= 1)
                t, pix, depth = t[keep], (py * w + px)[keep], depth[keep]
                best.scatter_reduce_(0, pix, depth, reduce="amin")
                found.append((t, pix, depth))
            for t, pix, depth in found:  # lowest triangle id among those at the nearest depth
                at_best = depth == best[pix]
                winner.scatter_reduce_(0, pix[at_best], t[at_best], reduce="amin")
            covered = torch.nonzero(winner != none).squeeze(-1)
            tri_of = winner[covered]
        # differentiable part: barycentrics and depth of the winners, recomputed with autograd
        out = torch.zeros(n_pix, 4, device=p.device, dtype=p.dtype)
        if covered.numel():
            xy, zw = _screen(p, h, w)
            lam, _ = _edge_functions(xy[tris[tri_of]], covered % w, covered // w)
            inv_w = 1.0 / p[tris[tri_of], 3]
            persp = lam * inv_w
            persp = persp / persp.sum(-1, keepdim=True)
            depth = (lam * zw[tris[tri_of]]).sum(-1)
            vals = torch.stack([persp[:, 0], persp[:, 1], depth, (tri_of + 1).to(p.dtype)], -1)
            out = out.index_put((covered,), vals)
        rast.append(out.reshape(h, w, 4))
    return torch.stack(rast)


def rasterize(pos: Tensor, tris: Tensor, resolution, backend: str = "auto") -> Tensor:
    """Rasterize clip-space triangles: (B, H, W, 4) = (u, v, z/w, triangle id + 1). See the module docstring."""
    pos, tris, h, w = _check(pos, tris, resolution)
    if _backend(backend, pos.device) == "nvdiffrast":
        dr = _nvdr()
        ctx = _NVDR_CONTEXTS.get(pos.device)
        if ctx is None:
            ctx = _NVDR_CONTEXTS[pos.device] = dr.RasterizeCudaContext(device=pos.device)
        rast, _ = dr.rasterize(ctx, pos.float().contiguous(), tris.int().contiguous(), (h, w))
        return rast
    return _rasterize_torch(pos, tris, h, w)


def interpolate(attr: Tensor, rast: Tensor, tris: Tensor, backend: str = "auto") -> Tensor:
    """Interpolate vertex attributes (B or 1, V, C) or (V, C) with `rast`'s barycentrics: (B, H, W, C)."""
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    if attr.dim() != 3:
        raise UserError(f"interpolate needs attributes of shape (B, V, C) or (V, C), got {tuple(attr.shape)}")
    if _backend(backend, rast.device) == "nvdiffrast":
        out, _ = _nvdr().interpolate(attr.float().contiguous(), rast, tris.int().contiguous())
        return out
    tris = tris.long()
    bsz = rast.shape[0]
    attr = attr.expand(bsz, -1, -1)
    tid = rast[..., 3].long() - 1  # (B, H, W)
    hit = tid >= 0
    corner = tris[tid.clamp(min=0)]  # (B, H, W, 3)
    batch = torch.arange(bsz, device=rast.device).view(bsz, 1, 1, 1).expand_as(corner)
    vals = attr[batch, corner]  # (B, H, W, 3, C)
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = u * vals[..., 0, :] + v * vals[..., 1, :] + (1 - u - v) * vals[..., 2, :]
    return out * hit.unsqueeze(-1).to(out.dtype)


def clip_from_cameras(verts: Tensor, cameras, near: float = 0.1, far: float = 100.0) -> Tensor:
    """Clip-space positions (C, V, 4) of world-space `verts` (V, 3) or (C, V, 3) seen by C `Cameras`."""
    if not 0 < near < far:
        raise UserError(f"clip_from_cameras needs 0 < near < far, got near={near}, far={far}")
    if verts.dim() == 2:
        verts = verts.unsqueeze(0)
    homo = torch.cat([verts, torch.ones_like(verts[..., :1])], -1)
    cam = torch.einsum("cij,cvj->cvi", cameras.viewmats.to(verts), homo.expand(len(cameras), -1, -1))
    K = cameras.Ks.to(verts)
    x, y, z = cam[..., 0], cam[..., 1], cam[..., 2]
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    sx, cx, cy = K[:, 0, 1, None], K[:, 0, 2, None], K[:, 1, 2, None]
    w_px, h_px = cameras.width, cameras.height
    clip_x = (2 * (fx * x + sx * y) + (2 * cx - w_px) * z) / w_px
    clip_y = (2 * fy * y + (2 * cy - h_px) * z) / h_px
    clip_z = (far + near) / (far - near) * z - 2 * far * near / (far - near)
    return torch.stack([clip_x, clip_y, clip_z, z], -1)


def _point_segment_sq(px: Tensor, py: Tensor, a: Tensor, b: Tensor) -> Tensor:
    d = b - a
    t = (((px - a[:, 0]) * d[:, 0] + (py - a[:, 1]) * d[:, 1]) / (d * d).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    ex, ey = a[:, 0] + t * d[:, 0] - px, a[:, 1] + t * d[:, 1] - py
    return ex * ex + ey * ey


def soft_silhouette(pos: Tensor, tris: Tensor, resolution, sigma: float = 0.5) -> Tensor:
    """SoftRas silhouette (B, H, W) in [0, 1]: 1 - prod over triangles of (1 - sigmoid(+-d^2 / sigma)).

    d is in pixels; `sigma` in squared pixels. Triangles whose influence on a pixel is below 1e-4 are
    not listed for it. Differentiable in `pos`.
    """
    pos, tris, h, w = _check(pos, tris, resolution)
    if sigma <= 0:
        raise UserError(f"soft_silhouette needs sigma > 0 (in squared pixels), got {sigma}")
    margin = float((sigma * 9.22) ** 0.5) + 1.0  # sigmoid(-d^2/sigma) < 1e-4 beyond it
    out = []
    for bi in range(pos.shape[0]):
        p = pos[bi]
        xy, _ = _screen(p, h, w)
        txy = xy[tris]
        ok = (p.detach()[tris, 3] > 0).all(-1) & torch.isfinite(txy.detach()).all(-1).all(-1)
        log_empty = torch.zeros(h * w, device=p.device, dtype=p.dtype)
        for t, px, py in _candidates(txy.detach(), ok, h, w, margin):
            tri = txy[t]
            lam, area = _edge_functions(tri, px, py)
            inside = (lam >= 0).all(-1) & (area != 0)
            cx, cy = px.to(p.dtype) + 0.5, py.to(p.dtype) + 0.5
            d2 = torch.stack([_point_segment_sq(cx, cy, tri[:, i], tri[:, (i + 1) % 3]) for i in range(3)]).amin(0)
            sign = inside.to(p.dtype) * 2 - 1
            prob = torch.sigmoid(sign * d2 / sigma)
            log_empty = log_empty.index_add(0, py * w + px, torch.log1p(-prob.clamp(max=1 - 1e-7)))
        out.append((1 - torch.exp(log_empty)).reshape(h, w))
    return torch.stack(out)
