"""The numba kernels of the compiled CPU rasterizer (numpy arrays in, numpy arrays out).

`utils.rendering.splat_numba` wraps them in an autograd function; this file holds only
the loops, so it imports numpy and numba and nothing else.

Both kernels deal the tiles round-robin to `n_workers` numba threads and work one tile at a
time: the tile's depth-sorted intersections are first copied into contiguous buffers (as gsplat
stages them in shared memory) with the box of the tile's pixels each can reach, then every
Gaussian is composited into the pixels of its box.

- `forward_kernel`: front to back, per pixel: skip sigma < 0 and alpha < 1/255, clamp alpha at
  0.999, stop before the Gaussian that would take the transmittance below 1e-4; writes colour,
  alpha, the index after the last Gaussian drawn and the final transmittance of each pixel.
- `backward_kernel`: back to front from each pixel's last Gaussian, undoing the transmittance
  (T_i = T_{i+1} / (1 - alpha_i)) and carrying the sums of w_j c_j and w_j behind, so that

      dL/dalpha_i = sum_d vC_d (T_i c_id - S_id / (1 - alpha_i)) + vA (T_i - S_i / (1 - alpha_i));

  writes one gradient row per intersection (a tile owns its rows: no races, and the result does
  not depend on the number of threads).

The discrete decisions (sigma < 0, alpha < 1/255, the clamp) are taken in the input's float type
with the reference's order of operations; transmittance and sums are float64.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["forward_kernel", "backward_kernel", "MIN_TRANSMITTANCE", "SKIP_MARGIN"]

MIN_TRANSMITTANCE = 1e-4
"""A pixel stops taking Gaussians once its transmittance would fall below this."""

SKIP_MARGIN = 1e-5
"""A pixel skips a Gaussian without taking exp when sigma > ln(opacity / threshold) + this; the
margin (in sigma, i.e. a 1e-5 relative change of alpha) is far above float32 rounding, so a skip
never changes a decision the exact test would take."""

BOX_MARGIN = 0.05
"""Padding (pixels) of a Gaussian's reachable box around the ellipse sigma = bound. A pixel centre
outside it has sigma above the bound by at least 2 bound x margin / extent (a relative 1e-4 for
an extent of 1000 px), far above the float32 rounding of sigma, so no decision of the exact test
changes; a wider margin only makes both kernels visit pixels they then skip."""


@njit(cache=True, nogil=True)
def _gather_tile(means2d, conics, colors, opacities, flatten_ids, start, end, threshold, ox, oy, tile_size,
                 buf, bound, cbuf, box):  # pragma: no cover
    """Copy a tile's intersections into contiguous buffers (as gsplat stages them in shared memory),
    with each Gaussian's skip bound and the box of the tile's pixels it can reach.

    The box (x0, x1, y0, y1, tile-local, end exclusive) holds every pixel centre where
    sigma <= bound: the ellipse sigma = bound has half extents sqrt(2 bound cov_xx) and
    sqrt(2 bound cov_yy) (cov = the inverse of the conic); BOX_MARGIN of padding keeps float
    rounding out. Pixels outside it would be skipped anyway, so the image does not change."""
    D = colors.shape[1]
    for k in range(end - start):
        g = flatten_ids[start + k]
        mx, my = means2d[g, 0], means2d[g, 1]
        ca, cb, cc = conics[g, 0], conics[g, 1], conics[g, 2]
        buf[k, 0] = mx
        buf[k, 1] = my
        buf[k, 2] = ca
        buf[k, 3] = cb
        buf[k, 4] = cc
        o = opacities[g]
        buf[k, 5] = o
        bnd = np.log(np.float64(o) / np.float64(threshold)) + SKIP_MARGIN if o >= threshold else -1.0
        bound[k] = bnd
        for d in range(D):
            cbuf[k, d] = colors[g, d]
        a64, b64, c64 = np.float64(ca), np.float64(cb), np.float64(cc)
        det = a64 * c64 - b64 * b64
        if bnd < 0:
            box[k, 0] = box[k, 1] = box[k, 2] = box[k, 3] = 0
        elif a64 > 0 and c64 > 0 and det > 0:
            ex = np.sqrt(2.0 * bnd * c64 / det) + BOX_MARGIN
            ey = np.sqrt(2.0 * bnd * a64 / det) + BOX_MARGIN
            # pixel x (centre x + 0.5) is reached when |mx - x - 0.5| <= ex
            box[k, 0] = min(max(int(np.ceil(np.float64(mx) - ex - 0.5)) - ox, 0), tile_size)
            box[k, 1] = min(max(int(np.floor(np.float64(mx) + ex - 0.5)) + 1 - ox, 0), tile_size)
            box[k, 2] = min(max(int(np.ceil(np.float64(my) - ey - 0.5)) - oy, 0), tile_size)
            box[k, 3] = min(max(int(np.floor(np.float64(my) + ey - 0.5)) + 1 - oy, 0), tile_size)
        else:  # not positive definite: the whole tile
            box[k, 0], box[k, 1], box[k, 2], box[k, 3] = 0, tile_size, 0, tile_size


@njit(cache=True, nogil=True)
def _tile_pixels(tx, ty, tile_size, width, height, half, pxs, pys, inside):  # pragma: no cover
    """Pixel centres of a tile (row-major) and whether each lies inside the image; returns their count."""
    n = 0
    for p in range(tile_size * tile_size):
        x = tx * tile_size + p % tile_size
        y = ty * tile_size + p // tile_size
        pxs[p] = np.float32(x) + half
        pys[p] = np.float32(y) + half
        inside[p] = x < width and y < height
        n += inside[p]
    return n

@njit(parallel=True, cache=True, nogil=True)
def forward_kernel(means2d, conics, colors, opacities, offsets, flatten_ids, tile_size, tile_w, tile_h,
                    width, height, consts, out_colors, out_alphas, last_ids, final_T, n_workers,
                    max_count):  # pragma: no cover
    half, threshold, max_alpha = consts[0], consts[1], consts[2]
    n_tiles = offsets.shape[0]
    per_cam = tile_w * tile_h
    M = flatten_ids.shape[0]
    D = colors.shape[1]
    P = tile_size * tile_size
    for worker in prange(n_workers):
        buf = np.empty((max_count, 6), dtype=means2d.dtype)
        bound = np.empty(max_count, dtype=np.float64)
        cbuf = np.empty((max_count, D), dtype=colors.dtype)
        box = np.empty((max_count, 4), dtype=np.int64)
        pxs = np.empty(P, dtype=means2d.dtype)
        pys = np.empty(P, dtype=means2d.dtype)
        inside = np.empty(P, dtype=np.bool_)
        done = np.empty(P, dtype=np.bool_)
        T = np.empty(P, dtype=np.float64)
        acc = np.empty((P, D), dtype=np.float64)
        a_sum = np.empty(P, dtype=np.float64)
        last = np.empty(P, dtype=np.int64)
        # tiles dealt round-robin: the busy tiles of an object in the middle of the image
        # spread over all threads
        for t in range(worker, n_tiles, n_workers):
            cam = t // per_cam
            ty = (t % per_cam) // tile_w
            tx = t % tile_w
            start = offsets[t]
            end = offsets[t + 1] if t + 1 < n_tiles else M
            _gather_tile(means2d, conics, colors, opacities, flatten_ids, start, end, threshold, tx * tile_size,
                         ty * tile_size, tile_size, buf, bound, cbuf, box)
            active = _tile_pixels(tx, ty, tile_size, width, height, half, pxs, pys, inside)
            for p in range(P):
                done[p] = not inside[p]
                T[p] = 1.0
                a_sum[p] = 0.0
                last[p] = 0
                for d in range(D):
                    acc[p, d] = 0.0
            for k in range(end - start):
                if active == 0:
                    break
                mx, my, ca, cb, cc, o = buf[k, 0], buf[k, 1], buf[k, 2], buf[k, 3], buf[k, 4], buf[k, 5]
                bnd = bound[k]
                for yy in range(box[k, 2], box[k, 3]):
                    for p in range(yy * tile_size + box[k, 0], yy * tile_size + box[k, 1]):
                        if done[p]:
                            continue
                        dx = mx - pxs[p]
                        dy = my - pys[p]
                        sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma < 0 or sigma > bnd:
                            continue
                        alpha = min(o * np.exp(-sigma), max_alpha)
                        if alpha < threshold:
                            continue
                        next_T = T[p] * (1.0 - np.float64(alpha))
                        if next_T < MIN_TRANSMITTANCE:
                            done[p] = True
                            active -= 1
                            continue
                        w = alpha * T[p]
                        for d in range(D):
                            acc[p, d] += w * cbuf[k, d]
                        a_sum[p] += w
                        T[p] = next_T
                        last[p] = k + 1
            for p in range(P):
                if inside[p]:
                    px = tx * tile_size + p % tile_size
                    py = ty * tile_size + p // tile_size
                    for d in range(D):
                        out_colors[cam, py, px, d] = acc[p, d]
                    out_alphas[cam, py, px] = a_sum[p]
                    last_ids[cam, py, px] = start + last[p]
                    final_T[cam, py, px] = T[p]

@njit(parallel=True, cache=True, nogil=True)
def backward_kernel(means2d, conics, colors, opacities, offsets, flatten_ids, tile_size, tile_w, tile_h,
                     width, height, consts, last_ids, final_T, v_colors, v_alphas,
                     g_means2d, g_conics, g_colors, g_opacities, n_workers, max_count):  # pragma: no cover
    half, threshold, max_alpha = consts[0], consts[1], consts[2]
    n_tiles = offsets.shape[0]
    per_cam = tile_w * tile_h
    M = flatten_ids.shape[0]
    D = colors.shape[1]
    P = tile_size * tile_size
    for worker in prange(n_workers):
        buf = np.empty((max_count, 6), dtype=means2d.dtype)
        bound = np.empty(max_count, dtype=np.float64)
        cbuf = np.empty((max_count, D), dtype=colors.dtype)
        box = np.empty((max_count, 4), dtype=np.int64)
        pxs = np.empty(P, dtype=means2d.dtype)
        pys = np.empty(P, dtype=means2d.dtype)
        inside = np.empty(P, dtype=np.bool_)
        T = np.empty(P, dtype=np.float64)
        behind = np.empty((P, D), dtype=np.float64)  # sum of w_j c_j over the Gaussians behind
        behind_a = np.empty(P, dtype=np.float64)
        v_c = np.empty((P, D), dtype=np.float64)
        v_a = np.empty(P, dtype=np.float64)
        last = np.empty(P, dtype=np.int64)
        g_col = np.empty(D, dtype=np.float64)
        for t in range(worker, n_tiles, n_workers):
            cam = t // per_cam
            ty = (t % per_cam) // tile_w
            tx = t % tile_w
            start = offsets[t]
            end = offsets[t + 1] if t + 1 < n_tiles else M
            _gather_tile(means2d, conics, colors, opacities, flatten_ids, start, end, threshold, tx * tile_size,
                         ty * tile_size, tile_size, buf, bound, cbuf, box)
            _tile_pixels(tx, ty, tile_size, width, height, half, pxs, pys, inside)
            k_end = 0
            for p in range(P):
                last[p] = 0
                behind_a[p] = 0.0
                for d in range(D):
                    behind[p, d] = 0.0
                if inside[p]:
                    px = tx * tile_size + p % tile_size
                    py = ty * tile_size + p // tile_size
                    last[p] = last_ids[cam, py, px] - start
                    T[p] = final_T[cam, py, px]
                    v_a[p] = v_alphas[cam, py, px]
                    for d in range(D):
                        v_c[p, d] = v_colors[cam, py, px, d]
                    k_end = max(k_end, last[p])
            for k in range(k_end - 1, -1, -1):
                mx, my, ca, cb, cc, o = buf[k, 0], buf[k, 1], buf[k, 2], buf[k, 3], buf[k, 4], buf[k, 5]
                bnd = bound[k]
                g_mx = g_my = g_ca = g_cb = g_cc = g_o = 0.0
                for d in range(D):
                    g_col[d] = 0.0
                for yy in range(box[k, 2], box[k, 3]):
                    for p in range(yy * tile_size + box[k, 0], yy * tile_size + box[k, 1]):
                        if k >= last[p]:
                            continue
                        dx = mx - pxs[p]
                        dy = my - pys[p]
                        sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        if sigma < 0 or sigma > bnd:
                            continue
                        vis = np.exp(-sigma)
                        raw = o * vis
                        alpha = min(raw, max_alpha)
                        if alpha < threshold:
                            continue
                        alpha64 = np.float64(alpha)
                        ra = 1.0 / (1.0 - alpha64)
                        Tp = T[p] * ra  # transmittance in front of this Gaussian
                        T[p] = Tp
                        w = alpha64 * Tp
                        v_alpha = v_a[p] * (Tp - behind_a[p] * ra)
                        for d in range(D):
                            c = np.float64(cbuf[k, d])
                            g_col[d] += w * v_c[p, d]
                            v_alpha += v_c[p, d] * (Tp * c - behind[p, d] * ra)
                            behind[p, d] += w * c
                        behind_a[p] += w
                        if raw <= max_alpha:  # the clamp passes no gradient
                            g_o += v_alpha * vis
                            v_sigma = -v_alpha * np.float64(raw)
                            dx64 = np.float64(mx - pxs[p])
                            dy64 = np.float64(my - pys[p])
                            g_ca += 0.5 * v_sigma * dx64 * dx64
                            g_cb += v_sigma * dx64 * dy64
                            g_cc += 0.5 * v_sigma * dy64 * dy64
                            g_mx += v_sigma * (ca * dx64 + cb * dy64)
                            g_my += v_sigma * (cc * dy64 + cb * dx64)
                i = start + k
                g_means2d[i, 0] = g_mx
                g_means2d[i, 1] = g_my
                g_conics[i, 0] = g_ca
                g_conics[i, 1] = g_cb
                g_conics[i, 2] = g_cc
                g_opacities[i, 0] = g_o
                for d in range(D):
                    g_colors[i, d] = g_col[d]


@njit(cache=True, nogil=True)
def sum_rows(ids, rows, out):  # pragma: no cover
    """out[ids[i]] += rows[i]: the per-intersection gradients summed per Gaussian (serial: no races)."""
    for i in range(ids.shape[0]):
        g = ids[i]
        for j in range(rows.shape[1]):
            out[g, j] += rows[i, j]


@njit(cache=True, nogil=True)
def _tile_rect(mx, my, rx, ry, ts, tile_w, tile_h):  # pragma: no cover
    """Tiles [x0, x1) x [y0, y1) touched by a Gaussian's extent, as `splat_raster.isect_tiles` computes them
    (in the means' float type)."""
    x0 = min(max(int(np.floor((mx - rx) / ts)), 0), tile_w)
    x1 = min(max(int(np.ceil((mx + rx) / ts)), 0), tile_w)
    y0 = min(max(int(np.floor((my - ry) / ts)), 0), tile_h)
    y1 = min(max(int(np.ceil((my + ry) / ts)), 0), tile_h)
    return x0, x1, y0, y1


@njit(cache=True, nogil=True)
def isect_tiles_kernel(means2d, radii, order, ts, tile_w, tile_h, n_cameras):  # pragma: no cover
    """(isect_ids, flatten_ids, offsets) of `splat_raster.isect_tiles` + `isect_offset_encode`, by a
    counting sort: every tile's run is filled in `order` (the stable depth order of all C x N
    Gaussians), so each run comes out sorted by depth, ties by index, as the reference sorts them.

    means2d (C * N, 2), radii (C * N, 2) as the means' float type, order (C * N,) int64, `ts` the
    tile side in that float type."""
    n_tiles = tile_w * tile_h
    total = n_cameras * n_tiles
    CN = means2d.shape[0]
    N = CN // n_cameras
    counts = np.zeros(total + 1, dtype=np.int64)
    for g in range(CN):
        if radii[g, 0] <= 0 or radii[g, 1] <= 0:
            continue
        x0, x1, y0, y1 = _tile_rect(means2d[g, 0], means2d[g, 1], radii[g, 0], radii[g, 1], ts, tile_w,
                                    tile_h)
        base = (g // N) * n_tiles
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                counts[base + ty * tile_w + tx + 1] += 1
    for t in range(total):
        counts[t + 1] += counts[t]  # now exclusive offsets, counts[total] = M
    M = counts[total]
    isect_ids = np.empty(M, dtype=np.int64)
    flatten_ids = np.empty(M, dtype=np.int64)
    fill = counts[:total].copy()
    for r in range(CN):
        g = order[r]
        if radii[g, 0] <= 0 or radii[g, 1] <= 0:
            continue
        x0, x1, y0, y1 = _tile_rect(means2d[g, 0], means2d[g, 1], radii[g, 0], radii[g, 1], ts, tile_w,
                                    tile_h)
        base = (g // N) * n_tiles
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                t = base + ty * tile_w + tx
                isect_ids[fill[t]] = t
                flatten_ids[fill[t]] = g
                fill[t] += 1
    return isect_ids, flatten_ids, counts[:total].copy()
