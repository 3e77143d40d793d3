"""Plain-PyTorch reference rasterizer and interpolator (the twins of pyfaid's kernels).

Same conventions as ``pyfaid.render.rasterize``: pixel centres at NDC ``(2x + 1) / W - 1``, row 0 at
NDC ``y = -1``, ``rast = (u, v, z/w, id + 1)`` with perspective-correct barycentrics, nearest
``z/w`` in ``[-1, 1]`` wins (lower id on ties), triangles with a vertex at ``w <= 0``, zero area or
entirely outside the clip volume are skipped.

Two rasterizers:

* :func:`rasterize_bruteforce` tests every pixel against every triangle (vectorised; triangles in
  chunks with a running depth buffer). It also reports which pixels are *ambiguous* (a pixel centre
  within ``tol`` pixels of an edge of a triangle that might cover it, or two candidate depths within
  ``ztol``), where an exact rasterizer may legitimately differ.
* :func:`rasterize_bbox` visits only the pixels inside each triangle's bounding box (vectorised over
  triangles, grouped by box size) and resolves depth with ``scatter_reduce``: the stronger pure-PyTorch
  peer used by ``benchmarks/bm_rasterize.py`` on large meshes.

Both return ``u, v`` computed differentiably from ``pos`` for the winning triangles, so autograd
through them gives the reference gradient with respect to the positions.
"""

from __future__ import annotations

import math

import torch


def _homogeneous(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int):
    """Per-triangle vertices in centred pixel units q = (x W/2, y H/2, w): [B, F, 3, 3]."""
    t = tri.long()
    v = pos[:, t]  # [B, F, 3, 4]
    q = torch.stack([v[..., 0] * (width / 2), v[..., 1] * (height / 2), v[..., 3]], dim=-1)
    return v, q


def _setup(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int):
    """Edge functions (sign-normalised), depth plane and validity of every triangle.

    Returns E [B, F, 3, 3] (A_k = E[k] . (px, py, 1)), D [B, F, 3] (z/w = D . p),
    valid [B, F] and the projected screen positions s [B, F, 3, 2] (centred pixel units).
    """
    with torch.no_grad():
        v, q = _homogeneous(pos, tri, height, width)
        w = v[..., 3]
        finite = torch.isfinite(v).all(-1).all(-1)
        valid = (w > 0).all(-1) & finite
        for c in range(3):
            valid &= ~(v[..., c] > w).all(-1)
            valid &= ~(v[..., c] < -w).all(-1)
        wq = torch.where(w > 0, w, torch.ones_like(w))
        s = q[..., :2] / wq[..., None]
        a = s[..., 1, :] - s[..., 0, :]
        b = s[..., 2, :] - s[..., 0, :]
        area2 = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
        scale = a.abs().sum(-1) * b.abs().sum(-1)
        valid &= area2.abs() > 16 * torch.finfo(pos.dtype).eps * scale
        e = torch.stack([
            torch.linalg.cross(q[..., 1, :], q[..., 2, :]),
            torch.linalg.cross(q[..., 2, :], q[..., 0, :]),
            torch.linalg.cross(q[..., 0, :], q[..., 1, :]),
        ], dim=-2)  # [B, F, 3, 3]
        det = (q[..., 0, :] * e[..., 0, :]).sum(-1)
        valid &= (det != 0) & torch.isfinite(det)
        sign = torch.where(det < 0, -1.0, 1.0).to(pos.dtype)
        e = e * sign[..., None, None]
        det = det.abs()
        det = torch.where(valid, det, torch.ones_like(det))
        d = (v[..., 2][..., None] * e).sum(-2) / det[..., None]  # [B, F, 3]
        valid &= torch.isfinite(d).all(-1)
    return e, d, valid, s


def _pixel_grid(height: int, width: int, dtype, device):
    """Centred pixel-centre coordinates, [H*W, 3] rows (px, py, 1), row-major."""
    xs = torch.arange(width, dtype=dtype, device=device) + 0.5 - width / 2
    ys = torch.arange(height, dtype=dtype, device=device) + 0.5 - height / 2
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([px.reshape(-1), py.reshape(-1), torch.ones_like(px).reshape(-1)], -1)


def _barycentrics_from_ids(pos, tri, ids, height, width):
    """Differentiable (u, v) and z/w of the triangles ``ids`` [B, P] (-1 empty) at every pixel."""
    B = pos.shape[0]
    P = height * width
    p = _pixel_grid(height, width, pos.dtype, pos.device)  # [P, 3]
    covered = ids >= 0
    safe = ids.clamp(min=0)
    t = tri.long()[safe]  # [B, P, 3]
    v = torch.gather(pos, 1, t.reshape(B, -1, 1).expand(-1, -1, 4)).reshape(B, P, 3, 4)
    q = torch.stack([v[..., 0] * (width / 2), v[..., 1] * (height / 2), v[..., 3]], dim=-1)
    a = torch.stack([
        (torch.linalg.cross(q[..., 1, :], q[..., 2, :]) * p).sum(-1),
        (torch.linalg.cross(q[..., 2, :], q[..., 0, :]) * p).sum(-1),
        (torch.linalg.cross(q[..., 0, :], q[..., 1, :]) * p).sum(-1),
    ], dim=-1)  # [B, P, 3]
    ssum = a.sum(-1)
    ssum = torch.where(covered, ssum, torch.ones_like(ssum))
    lam = a / ssum[..., None]
    zc = (lam * v[..., 2]).sum(-1)
    wc = (lam * v[..., 3]).sum(-1)
    wc = torch.where(covered, wc, torch.ones_like(wc))
    z = zc / wc
    zero = torch.zeros((), dtype=pos.dtype, device=pos.device)
    u = torch.where(covered, lam[..., 0], zero)
    vv = torch.where(covered, lam[..., 1], zero)
    z = torch.where(covered, z, zero).detach()
    idc = (ids + 1).to(pos.dtype)
    return torch.stack([u, vv, z, idc], -1).reshape(B, height, width, 4)


def rasterize_bruteforce(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int,
                         tol: float | None = 1e-3, ztol: float = 1e-6, chunk: int = 256):
    """Reference rasterizer: every pixel against every triangle.

    Args:
        pos: [B, V, 4] clip-space positions.
        tri: [F, 3] integer indices.
        height, width: output resolution.
        tol: pixels whose centre is within ``tol`` pixels of an edge of a candidate triangle are
            reported ambiguous; None skips the ambiguity bookkeeping (plain rasterization).
        ztol: pixels whose two nearest candidate depths differ by less are reported ambiguous.
        chunk: triangles per step (running depth buffer across steps).

    Returns:
        (rast [B, H, W, 4], ambiguous [B, H, W] bool). rast's u, v are differentiable w.r.t. pos.
    """
    B = pos.shape[0]
    P = height * width
    F = tri.shape[0]
    dev, dt = pos.device, pos.dtype
    p = _pixel_grid(height, width, dt, dev)
    best_z = torch.full((B, P), math.inf, dtype=dt, device=dev)
    second_z = torch.full((B, P), math.inf, dtype=dt, device=dev)
    best_id = torch.full((B, P), -1, dtype=torch.long, device=dev)
    ambiguous = torch.zeros((B, P), dtype=torch.bool, device=dev)
    if F > 0:
        e, d, valid, _ = _setup(pos.detach(), tri, height, width)
        for f0 in range(0, F, chunk):
            ec, dc, vc = e[:, f0:f0 + chunk], d[:, f0:f0 + chunk], valid[:, f0:f0 + chunk]
            a = torch.einsum("bfkc,pc->bpfk", ec, p)  # [B, P, f, 3]
            depth = torch.einsum("bfc,pc->bpf", dc, p)
            in_depth = (depth >= -1) & (depth <= 1)
            inside = (a >= 0).all(-1) & in_depth & vc[:, None]
            if tol is not None:
                norm = ec[..., :2].norm(dim=-1).clamp_min(1e-300)  # [B, f, 3]
                dist = a / norm[:, None]  # signed distance (pixels) to each edge line
                near_edge = (dist > -tol).all(-1) & (dist.abs() < tol).any(-1) & vc[:, None]
                near_clip = ((dist > -tol).all(-1) & ((depth.abs() - 1).abs() < ztol) & vc[:, None])
                ambiguous |= (near_edge | near_clip).any(-1)
            dz = torch.where(inside, depth, torch.full_like(depth, math.inf))
            # nearest in this chunk (first index = lowest id on ties); strict < keeps earlier ids
            cmin, cidx = dz.min(-1)
            best_id = torch.where(cmin < best_z, cidx + f0, best_id)
            if tol is None:
                best_z = torch.minimum(best_z, cmin)
                continue
            # running two smallest depths, for the depth-ambiguity test
            vals = torch.topk(dz, min(2, dz.shape[-1]), dim=-1, largest=False).values
            merged = torch.sort(torch.cat([best_z[..., None], second_z[..., None], vals], -1), -1).values
            best_z, second_z = merged[..., 0], merged[..., 1]
        if tol is not None:
            ambiguous |= torch.isfinite(second_z) & ((second_z - best_z) < ztol)
    rast = _barycentrics_from_ids(pos, tri, best_id, height, width)
    return rast, ambiguous.reshape(B, height, width)


def rasterize_bbox(pos: torch.Tensor, tri: torch.Tensor, height: int, width: int,
                   max_candidates: int = 1 << 22) -> torch.Tensor:
    """Reference rasterizer visiting only the pixels in each triangle's bounding box.

    Triangles are grouped by bounding-box size (powers of two) so each group is one vectorised
    pass over [triangles, k*k pixel offsets]; depth is resolved with ``scatter_reduce`` (nearest
    depth, then lowest id). Returns rast [B, H, W, 4] with u, v differentiable w.r.t. ``pos``.
    """
    B = pos.shape[0]
    P = height * width
    dev, dt = pos.device, pos.dtype
    ids = torch.full((B * P,), -1, dtype=torch.long, device=dev)
    F = tri.shape[0]
    if F > 0:
        e, d, valid, s = _setup(pos.detach(), tri, height, width)
        eps = 1.0 / 256
        sx = s[..., 0] + (width - 1) / 2
        sy = s[..., 1] + (height - 1) / 2
        x0 = torch.ceil((sx.amin(-1) - eps).clamp(-1, width)).long().clamp(min=0)
        x1 = torch.floor((sx.amax(-1) + eps).clamp(-1, width)).long().clamp(max=width - 1)
        y0 = torch.ceil((sy.amin(-1) - eps).clamp(-1, height)).long().clamp(min=0)
        y1 = torch.floor((sy.amax(-1) + eps).clamp(-1, height)).long().clamp(max=height - 1)
        valid &= (x0 <= x1) & (y0 <= y1)
        size = torch.maximum(x1 - x0 + 1, y1 - y0 + 1)
        bidx, fidx = torch.nonzero(valid, as_tuple=True)
        size = size[bidx, fidx]
        pix_all, z_all, id_all = [], [], []
        k = 1
        while bidx.numel() > 0:
            sel = size <= k
            if sel.any():
                bb, ff = bidx[sel], fidx[sel]
                step = max(1, max_candidates // (k * k))
                off = torch.arange(k, device=dev)
                oy, ox = torch.meshgrid(off, off, indexing="ij")
                ox, oy = ox.reshape(-1), oy.reshape(-1)
                for c0 in range(0, bb.numel(), step):
                    b_, f_ = bb[c0:c0 + step], ff[c0:c0 + step]
                    xs = x0[b_, f_][:, None] + ox  # [n, k*k]
                    ys = y0[b_, f_][:, None] + oy
                    inb = (xs <= x1[b_, f_][:, None]) & (ys <= y1[b_, f_][:, None])
                    px = xs.to(dt) + 0.5 - width / 2
                    py = ys.to(dt) + 0.5 - height / 2
                    ee = e[b_, f_]  # [n, 3, 3]
                    a = ee[:, None, :, 0] * px[..., None] + ee[:, None, :, 1] * py[..., None] + ee[:, None, :, 2]
                    dd = d[b_, f_]
                    z = dd[:, None, 0] * px + dd[:, None, 1] * py + dd[:, None, 2]
                    hit = inb & (a >= 0).all(-1) & (z >= -1) & (z <= 1)
                    pix_all.append(((b_[:, None] * P + ys * width + xs))[hit])
                    z_all.append(z[hit])
                    id_all.append(f_[:, None].expand_as(xs)[hit])
                bidx, fidx, size = bidx[~sel], fidx[~sel], size[~sel]
            k *= 2
        if pix_all:
            pix = torch.cat(pix_all)
            z = torch.cat(z_all)
            fid = torch.cat(id_all)
            zbuf = torch.full((B * P,), math.inf, dtype=dt, device=dev)
            zbuf.scatter_reduce_(0, pix, z, reduce="amin")
            win = z == zbuf[pix]
            ibuf = torch.full((B * P,), F, dtype=torch.long, device=dev)
            ibuf.scatter_reduce_(0, pix[win], fid[win], reduce="amin")
            ids = torch.where(ibuf < F, ibuf, ids)
    return _barycentrics_from_ids(pos, tri, ids.reshape(B, P), height, width)


def interpolate_reference(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """attr [B or 1, V, C], rast [B, H, W, 4], tri [F, 3] -> [B, H, W, C] (differentiable)."""
    B, H, W, _ = rast.shape
    if attr.dim() == 2:
        attr = attr[None]
    attr = attr.expand(B, -1, -1)
    ids = rast[..., 3].round().long() - 1  # [B, H, W]
    covered = ids >= 0
    t = tri.long()[ids.clamp(min=0)]  # [B, H, W, 3]
    C = attr.shape[-1]
    gathered = torch.gather(attr, 1, t.reshape(B, -1, 1).expand(-1, -1, C)).reshape(B, H, W, 3, C)
    u, v = rast[..., 0:1], rast[..., 1:2]
    out = u * gathered[..., 0, :] + v * gathered[..., 1, :] + (1 - u - v) * gathered[..., 2, :]
    return torch.where(covered[..., None], out, torch.zeros_like(out))
