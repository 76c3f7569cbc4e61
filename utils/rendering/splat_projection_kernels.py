"""numba kernels of the compiled CPU backend before rasterization: EWA projection and SH colours.

The forward kernels compute what `utils.rendering.splat_projection.fully_fused_projection`
(with the covariance of `quat_scale_to_covar_preci` fused in) and `utils.rendering.sh.
spherical_harmonics` compute; the backward kernels are their hand-derived adjoints (the
reference gets them from autograd, and the tests compare the two). Every Gaussian is independent,
so the loops run in parallel over Gaussians, and a Gaussian's gradient sums its cameras in
one thread (no races). Arithmetic is float64 throughout; results are stored in the output's type.

`utils.rendering.splat_numba` wraps these in autograd functions.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["projection_forward", "projection_backward", "sh_forward", "sh_backward"]

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


@njit(cache=True, nogil=True)
def _rotmat(qw, qx, qy, qz, R):  # pragma: no cover
    """R (3, 3) of the unit quaternion (qw, qx, qy, qz)."""
    R[0, 0] = 1 - 2 * (qy * qy + qz * qz)
    R[0, 1] = 2 * (qx * qy - qw * qz)
    R[0, 2] = 2 * (qx * qz + qw * qy)
    R[1, 0] = 2 * (qx * qy + qw * qz)
    R[1, 1] = 1 - 2 * (qx * qx + qz * qz)
    R[1, 2] = 2 * (qy * qz - qw * qx)
    R[2, 0] = 2 * (qx * qz - qw * qy)
    R[2, 1] = 2 * (qy * qz + qw * qx)
    R[2, 2] = 1 - 2 * (qx * qx + qy * qy)


@njit(cache=True, nogil=True)
def _world_cov(quats, scales, n, R, S):  # pragma: no cover
    """World covariance S = R diag(s)^2 R^T of Gaussian n (R holds its rotation); returns the
    quaternion's norm."""
    qw, qx, qy, qz = np.float64(quats[n, 0]), np.float64(quats[n, 1]), np.float64(quats[n, 2]), np.float64(quats[n, 3])
    qn = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    _rotmat(qw / qn, qx / qn, qy / qn, qz / qn, R)
    s0, s1, s2 = np.float64(scales[n, 0]), np.float64(scales[n, 1]), np.float64(scales[n, 2])
    for i in range(3):
        for j in range(3):
            S[i, j] = R[i, 0] * R[j, 0] * s0 * s0 + R[i, 1] * R[j, 1] * s1 * s1 + R[i, 2] * R[j, 2] * s2 * s2
    return qn


@njit(cache=True, nogil=True)
def _camera_cov(viewmats, c, S, Sc, tmp):  # pragma: no cover
    """Sc = W S W^T for the rotation W of camera c (tmp: a 3x3 scratch array)."""
    for i in range(3):
        for j in range(3):
            tmp[i, j] = viewmats[c, i, 0] * S[0, j] + viewmats[c, i, 1] * S[1, j] + viewmats[c, i, 2] * S[2, j]
    for i in range(3):
        for j in range(3):
            Sc[i, j] = tmp[i, 0] * viewmats[c, j, 0] + tmp[i, 1] * viewmats[c, j, 1] + tmp[i, 2] * viewmats[c, j, 2]


@njit(parallel=True, cache=True, nogil=True)
def projection_forward(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far,
                       use_opacity, antialiased, alpha_threshold, radii, means2d, depths, conics, comps,
                       n_workers):  # pragma: no cover
    """Fill radii (C, N, 2) int32, means2d (C, N, 2), depths (C, N), conics (C, N, 3) and the
    antialiasing compensations (C, N) of N Gaussians seen from C cameras."""
    C = viewmats.shape[0]
    N = means.shape[0]
    chunk = (N + n_workers - 1) // n_workers
    for worker in prange(n_workers):
        R = np.empty((3, 3))
        S = np.empty((3, 3))
        Sc = np.empty((3, 3))
        tmp = np.empty((3, 3))
        for n in range(worker * chunk, min(N, (worker + 1) * chunk)):
            _world_cov(quats, scales, n, R, S)
            mx, my, mz = np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2])
            for c in range(C):
                x = viewmats[c, 0, 0] * mx + viewmats[c, 0, 1] * my + viewmats[c, 0, 2] * mz + viewmats[c, 0, 3]
                y = viewmats[c, 1, 0] * mx + viewmats[c, 1, 1] * my + viewmats[c, 1, 2] * mz + viewmats[c, 1, 3]
                z = viewmats[c, 2, 0] * mx + viewmats[c, 2, 1] * my + viewmats[c, 2, 2] * mz + viewmats[c, 2, 3]
                _camera_cov(viewmats, c, S, Sc, tmp)
                fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
                lim_x = 0.3 * 0.5 * width / fx
                lim_y = 0.3 * 0.5 * height / fy
                xz = min(max(x / z, -(cx / fx + lim_x)), (width - cx) / fx + lim_x)
                yz = min(max(y / z, -(cy / fy + lim_y)), (height - cy) / fy + lim_y)
                j00, j02 = fx / z, -fx * xz / z
                j11, j12 = fy / z, -fy * yz / z
                # cov2d = J Sc J^T with J = [[j00, 0, j02], [0, j11, j12]]
                a0 = j00 * j00 * Sc[0, 0] + 2 * j00 * j02 * Sc[0, 2] + j02 * j02 * Sc[2, 2]
                b0 = j00 * j11 * Sc[0, 1] + j00 * j12 * Sc[0, 2] + j02 * j11 * Sc[2, 1] + j02 * j12 * Sc[2, 2]
                c0 = j11 * j11 * Sc[1, 1] + 2 * j11 * j12 * Sc[1, 2] + j12 * j12 * Sc[2, 2]
                det_orig = a0 * c0 - b0 * b0
                a, b, cc = a0 + eps2d, b0, c0 + eps2d
                det = max(a * cc - b * b, 1e-10)
                comps[c, n] = math.sqrt(max(det_orig / det, 0.0))
                conics[c, n, 0] = cc / det
                conics[c, n, 1] = -b / det
                conics[c, n, 2] = a / det
                u = fx * x / z + cx
                v = fy * y / z + cy
                means2d[c, n, 0] = u
                means2d[c, n, 1] = v
                depths[c, n] = z
                # the extent: 3.33 sigma, or (with opacities) where alpha falls below the threshold
                ext = 3.33
                if use_opacity:
                    op = np.float64(opacities[n])
                    if antialiased:  # the compensated opacity sets the extent
                        op *= comps[c, n]
                    ext = min(ext, math.sqrt(2.0 * math.log(max(op / alpha_threshold, 1.0))))
                rx = math.ceil(np.float32(ext) * np.float32(math.sqrt(np.float32(a))))
                ry = math.ceil(np.float32(ext) * np.float32(math.sqrt(np.float32(cc))))
                ok = z > near and z < far and ext > 0
                ok = ok and u + rx > 0 and u - rx < width and v + ry > 0 and v - ry < height
                radii[c, n, 0] = np.int32(rx) if ok else 0
                radii[c, n, 1] = np.int32(ry) if ok else 0


@njit(parallel=True, cache=True, nogil=True)
def projection_backward(means, quats, scales, viewmats, Ks, width, height, eps2d, v_means2d, v_depths, v_conics,
                        v_comps, g_means, g_quats, g_scales, n_workers):  # pragma: no cover
    """Gradients of means (N, 3), quats (N, 4) and scales (N, 3) from those of the outputs."""
    C = viewmats.shape[0]
    N = means.shape[0]
    chunk = (N + n_workers - 1) // n_workers
    for worker in prange(n_workers):
        R = np.empty((3, 3))
        S = np.empty((3, 3))
        Sc = np.empty((3, 3))
        tmp = np.empty((3, 3))
        vS = np.empty((3, 3))  # gradient of the world covariance, summed over cameras
        vm = np.empty(3)
        J = np.zeros((2, 3))
        V = np.empty((2, 2))
        vSc = np.empty((3, 3))
        vR = np.empty((3, 3))
        s = np.empty(3)
        for n in range(worker * chunk, min(N, (worker + 1) * chunk)):
            vS[:] = 0.0
            vm[:] = 0.0
            qn = _world_cov(quats, scales, n, R, S)
            mx, my, mz = np.float64(means[n, 0]), np.float64(means[n, 1]), np.float64(means[n, 2])
            for c in range(C):
                gu, gv = np.float64(v_means2d[c, n, 0]), np.float64(v_means2d[c, n, 1])
                gp, gq, gr = np.float64(v_conics[c, n, 0]), np.float64(v_conics[c, n, 1]), np.float64(v_conics[c, n, 2])
                gd, gk = np.float64(v_depths[c, n]), np.float64(v_comps[c, n])
                if gu == 0 and gv == 0 and gp == 0 and gq == 0 and gr == 0 and gd == 0 and gk == 0:
                    continue
                x = viewmats[c, 0, 0] * mx + viewmats[c, 0, 1] * my + viewmats[c, 0, 2] * mz + viewmats[c, 0, 3]
                y = viewmats[c, 1, 0] * mx + viewmats[c, 1, 1] * my + viewmats[c, 1, 2] * mz + viewmats[c, 1, 3]
                z = viewmats[c, 2, 0] * mx + viewmats[c, 2, 1] * my + viewmats[c, 2, 2] * mz + viewmats[c, 2, 3]
                _camera_cov(viewmats, c, S, Sc, tmp)
                fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
                lim_x = 0.3 * 0.5 * width / fx
                lim_y = 0.3 * 0.5 * height / fy
                lo_x, hi_x = -(cx / fx + lim_x), (width - cx) / fx + lim_x
                lo_y, hi_y = -(cy / fy + lim_y), (height - cy) / fy + lim_y
                xz_raw, yz_raw = x / z, y / z
                xz = min(max(xz_raw, lo_x), hi_x)
                yz = min(max(yz_raw, lo_y), hi_y)
                j00, j02 = fx / z, -fx * xz / z
                j11, j12 = fy / z, -fy * yz / z
                a0 = j00 * j00 * Sc[0, 0] + 2 * j00 * j02 * Sc[0, 2] + j02 * j02 * Sc[2, 2]
                b0 = j00 * j11 * Sc[0, 1] + j00 * j12 * Sc[0, 2] + j02 * j11 * Sc[2, 1] + j02 * j12 * Sc[2, 2]
                c0 = j11 * j11 * Sc[1, 1] + 2 * j11 * j12 * Sc[1, 2] + j12 * j12 * Sc[2, 2]
                det_orig = a0 * c0 - b0 * b0
                a, b, cc = a0 + eps2d, b0, c0 + eps2d
                det_raw = a * cc - b * b
                det = max(det_raw, 1e-10)
                # conics (cc / det, -b / det, a / det) and compensation sqrt(det_orig / det)
                va = gr / det
                vb = -gq / det
                vc = gp / det
                vdet = -(gp * cc - gq * b + gr * a) / (det * det)
                ratio = det_orig / det
                if gk != 0 and ratio > 0:
                    vratio = gk * 0.5 / math.sqrt(ratio)
                    vdet -= vratio * det_orig / (det * det)
                    vdo = vratio / det
                    va += vdo * c0
                    vc += vdo * a0
                    vb -= vdo * 2 * b0
                if det_raw >= 1e-10:
                    va += vdet * cc
                    vc += vdet * a
                    vb -= vdet * 2 * b
                # cov2d = J Sc J^T: V symmetric with off-diagonal vb / 2
                v01 = 0.5 * vb
                # vSc = J^T V J
                vJ00 = 2 * (va * (j00 * Sc[0, 0] + j02 * Sc[2, 0]) + v01 * (j11 * Sc[1, 0] + j12 * Sc[2, 0]))
                vJ02 = 2 * (va * (j00 * Sc[0, 2] + j02 * Sc[2, 2]) + v01 * (j11 * Sc[1, 2] + j12 * Sc[2, 2]))
                vJ11 = 2 * (v01 * (j00 * Sc[0, 1] + j02 * Sc[2, 1]) + vc * (j11 * Sc[1, 1] + j12 * Sc[2, 1]))
                vJ12 = 2 * (v01 * (j00 * Sc[0, 2] + j02 * Sc[2, 2]) + vc * (j11 * Sc[1, 2] + j12 * Sc[2, 2]))
                J[0, 0], J[0, 2], J[1, 1], J[1, 2] = j00, j02, j11, j12
                V[0, 0], V[0, 1], V[1, 0], V[1, 1] = va, v01, v01, vc
                for i in range(3):
                    for j in range(3):
                        vSc[i, j] = (J[0, i] * (V[0, 0] * J[0, j] + V[0, 1] * J[1, j])
                                     + J[1, i] * (V[1, 0] * J[0, j] + V[1, 1] * J[1, j]))
                # vS += W^T vSc W
                for i in range(3):
                    for j in range(3):
                        acc = 0.0
                        for k in range(3):
                            for m in range(3):
                                acc += viewmats[c, k, i] * vSc[k, m] * viewmats[c, m, j]
                        vS[i, j] += acc
                # camera-space mean: projection, Jacobian and depth
                vx = gu * fx / z
                vy = gv * fy / z
                vz = -gu * fx * x / (z * z) - gv * fy * y / (z * z) + gd
                vz += -vJ00 * fx / (z * z) - vJ11 * fy / (z * z)
                vz += vJ02 * fx * xz / (z * z) + vJ12 * fy * yz / (z * z)
                vxz = -vJ02 * fx / z
                vyz = -vJ12 * fy / z
                if lo_x <= xz_raw <= hi_x:
                    vx += vxz / z
                    vz -= vxz * x / (z * z)
                if lo_y <= yz_raw <= hi_y:
                    vy += vyz / z
                    vz -= vyz * y / (z * z)
                for i in range(3):
                    vm[i] += viewmats[c, 0, i] * vx + viewmats[c, 1, i] * vy + viewmats[c, 2, i] * vz
            for i in range(3):
                g_means[n, i] = vm[i]
            # S = M M^T with M = R diag(s): vM = (vS + vS^T) M
            for i in range(3):
                s[i] = scales[n, i]
            for j in range(3):
                gs = 0.0
                for i in range(3):
                    vMij = 0.0
                    for k in range(3):
                        vMij += (vS[i, k] + vS[k, i]) * R[k, j] * s[j]
                    vR[i, j] = vMij * s[j]
                    gs += vMij * R[i, j]
                g_scales[n, j] = gs
            w, qx, qy, qz = quats[n, 0] / qn, quats[n, 1] / qn, quats[n, 2] / qn, quats[n, 3] / qn
            gw = 2 * (-qz * vR[0, 1] + qy * vR[0, 2] + qz * vR[1, 0] - qx * vR[1, 2] - qy * vR[2, 0] + qx * vR[2, 1])
            gx = 2 * (qy * vR[0, 1] + qz * vR[0, 2] + qy * vR[1, 0] - 2 * qx * vR[1, 1] - w * vR[1, 2]
                      + qz * vR[2, 0] + w * vR[2, 1] - 2 * qx * vR[2, 2])
            gy = 2 * (-2 * qy * vR[0, 0] + qx * vR[0, 1] + w * vR[0, 2] + qx * vR[1, 0] + qz * vR[1, 2]
                      - w * vR[2, 0] + qz * vR[2, 1] - 2 * qy * vR[2, 2])
            gz = 2 * (-2 * qz * vR[0, 0] - w * vR[0, 1] + qx * vR[0, 2] + w * vR[1, 0] - 2 * qz * vR[1, 1]
                      + qy * vR[1, 2] + qx * vR[2, 0] + qy * vR[2, 1])
            # through the normalisation q / |q|
            dot = w * gw + qx * gx + qy * gy + qz * gz
            g_quats[n, 0] = (gw - w * dot) / qn
            g_quats[n, 1] = (gx - qx * dot) / qn
            g_quats[n, 2] = (gy - qy * dot) / qn
            g_quats[n, 3] = (gz - qz * dot) / qn


@njit(cache=True, nogil=True)
def _sh_bases(degree, x, y, z, out):  # pragma: no cover
    out[0] = SH_C0
    if degree >= 1:
        out[1] = -SH_C1 * y
        out[2] = SH_C1 * z
        out[3] = -SH_C1 * x
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out[4] = SH_C2[0] * xy
        out[5] = SH_C2[1] * yz
        out[6] = SH_C2[2] * (2 * zz - xx - yy)
        out[7] = SH_C2[3] * xz
        out[8] = SH_C2[4] * (xx - yy)
        if degree >= 3:
            out[9] = SH_C3[0] * y * (3 * xx - yy)
            out[10] = SH_C3[1] * xy * z
            out[11] = SH_C3[2] * y * (4 * zz - xx - yy)
            out[12] = SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy)
            out[13] = SH_C3[4] * x * (4 * zz - xx - yy)
            out[14] = SH_C3[5] * z * (xx - yy)
            out[15] = SH_C3[6] * x * (xx - 3 * yy)


@njit(cache=True, nogil=True)
def _sh_basis_grads(degree, x, y, z, gx, gy, gz):  # pragma: no cover
    """d basis_k / d(x, y, z) at a unit direction."""
    for k in range((degree + 1) ** 2):
        gx[k] = gy[k] = gz[k] = 0.0
    if degree >= 1:
        gy[1] = -SH_C1
        gz[2] = SH_C1
        gx[3] = -SH_C1
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        gx[4], gy[4] = SH_C2[0] * y, SH_C2[0] * x
        gy[5], gz[5] = SH_C2[1] * z, SH_C2[1] * y
        gx[6], gy[6], gz[6] = -2 * SH_C2[2] * x, -2 * SH_C2[2] * y, 4 * SH_C2[2] * z
        gx[7], gz[7] = SH_C2[3] * z, SH_C2[3] * x
        gx[8], gy[8] = 2 * SH_C2[4] * x, -2 * SH_C2[4] * y
        if degree >= 3:
            gx[9], gy[9] = SH_C3[0] * 6 * x * y, SH_C3[0] * (3 * xx - 3 * yy)
            gx[10], gy[10], gz[10] = SH_C3[1] * y * z, SH_C3[1] * x * z, SH_C3[1] * x * y
            gx[11], gy[11], gz[11] = (SH_C3[2] * -2 * x * y, SH_C3[2] * (4 * zz - xx - 3 * yy),
                                      SH_C3[2] * 8 * y * z)
            gx[12], gy[12], gz[12] = (SH_C3[3] * -6 * x * z, SH_C3[3] * -6 * y * z,
                                      SH_C3[3] * (6 * zz - 3 * xx - 3 * yy))
            gx[13], gy[13], gz[13] = (SH_C3[4] * (4 * zz - 3 * xx - yy), SH_C3[4] * -2 * x * y,
                                      SH_C3[4] * 8 * x * z)
            gx[14], gy[14], gz[14] = SH_C3[5] * 2 * x * z, SH_C3[5] * -2 * y * z, SH_C3[5] * (xx - yy)
            gx[15], gy[15] = SH_C3[6] * (3 * xx - 3 * yy), SH_C3[6] * -6 * x * y


@njit(parallel=True, cache=True, nogil=True)
def sh_forward(degree, means, coeffs, campos, out, n_workers):  # pragma: no cover
    """out (C, N, D) = max(sum_k basis_k(normalised means - campos) coeffs_k + 0.5, 0)."""
    C = campos.shape[0]
    N = means.shape[0]
    D = coeffs.shape[2]
    K = (degree + 1) ** 2
    chunk = (N + n_workers - 1) // n_workers
    for worker in prange(n_workers):
        basis = np.empty(16)
        for n in range(worker * chunk, min(N, (worker + 1) * chunk)):
            for c in range(C):
                dx = np.float64(means[n, 0]) - campos[c, 0]
                dy = np.float64(means[n, 1]) - campos[c, 1]
                dz = np.float64(means[n, 2]) - campos[c, 2]
                norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                _sh_bases(degree, dx / norm, dy / norm, dz / norm, basis)
                for d in range(D):
                    acc = 0.0
                    for k in range(K):
                        acc += basis[k] * coeffs[n, k, d]
                    out[c, n, d] = max(acc + 0.5, 0.0)


@njit(parallel=True, cache=True, nogil=True)
def sh_backward(degree, means, coeffs, campos, v_out, g_means, g_coeffs, n_workers):  # pragma: no cover
    """Gradients of the means (through the view direction) and of the coefficients."""
    C = campos.shape[0]
    N = means.shape[0]
    D = coeffs.shape[2]
    K = (degree + 1) ** 2
    chunk = (N + n_workers - 1) // n_workers
    for worker in prange(n_workers):
        basis = np.empty(16)
        gx = np.empty(16)
        gy = np.empty(16)
        gz = np.empty(16)
        vb = np.empty(16)  # gradient of each basis function
        for n in range(worker * chunk, min(N, (worker + 1) * chunk)):
            for k in range(coeffs.shape[1]):
                for d in range(D):
                    g_coeffs[n, k, d] = 0.0
            gm0 = gm1 = gm2 = 0.0
            for c in range(C):
                seen = False  # a Gaussian off screen (or fully hidden) has no colour gradient
                for d in range(D):
                    seen = seen or v_out[c, n, d] != 0
                if not seen:
                    continue
                dx = np.float64(means[n, 0]) - campos[c, 0]
                dy = np.float64(means[n, 1]) - campos[c, 1]
                dz = np.float64(means[n, 2]) - campos[c, 2]
                norm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                x, y, z = dx / norm, dy / norm, dz / norm
                _sh_bases(degree, x, y, z, basis)
                for k in range(K):
                    vb[k] = 0.0
                for d in range(D):
                    acc = 0.0
                    for k in range(K):
                        acc += basis[k] * coeffs[n, k, d]
                    if acc + 0.5 < 0.0:  # clamped at zero: no gradient
                        continue
                    g = v_out[c, n, d]
                    for k in range(K):
                        g_coeffs[n, k, d] += basis[k] * g
                        vb[k] += coeffs[n, k, d] * g
                if degree == 0:
                    continue
                _sh_basis_grads(degree, x, y, z, gx, gy, gz)
                vx = vy = vz = 0.0
                for k in range(1, K):
                    vx += gx[k] * vb[k]
                    vy += gy[k] * vb[k]
                    vz += gz[k] * vb[k]
                # through the normalisation d / |d|
                dot = x * vx + y * vy + z * vz
                gm0 += (vx - x * dot) / norm
                gm1 += (vy - y * dot) / norm
                gm2 += (vz - z * dot) / norm
            g_means[n, 0] = gm0
            g_means[n, 1] = gm1
            g_means[n, 2] = gm2
