"""The texture plane of :class:`pyfaid.synth.skin.SkinPainter`: the face model's mean shape
unwrapped onto a 2-D plane, the fixed region weights on it and the noise banks.

:class:`SkinCanvas` unwraps the mean shape once (a Lambert azimuthal equal-area projection seen
from a point behind the face, 1 texel = :data:`TEXEL` model units, about one vertex per texel),
places the face's regions (eyes, lips, mouth, brows, beard areas, cheeks, nose, forehead, where
freckles and age spots go) from the model's 68 landmarks on that plane, and prepares per-region
vertex subsets (:class:`RegionSubset`: layers that only touch a region only pay for it) and fixed
noise banks. Canvases are float32 images on that plane; :meth:`SkinCanvas.sample` reads them at
the vertices.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pyfaid.facemodel.builder.texture import BROW_COLOUR, MEAN_SKIN

__all__ = ["SkinCanvas", "RegionSubset", "TEXEL", "SHIFT", "texel_polygon", "fixed_point", "smoothstep"]

#: Model units (decimetres) per texel.
TEXEL = 0.01


def smoothstep(x):
    """``3 x^2 - 2 x^3`` of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def texel_polygon(points: np.ndarray) -> np.ndarray:
    """Float texel points to OpenCV's fixed-point int32 polygon (4 fractional bits)."""
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32)


def fixed_point(p) -> tuple[int, int]:
    """A float texel point to OpenCV's fixed-point integer coordinates (:data:`SHIFT` fractional bits)."""
    return int(round(float(p[0]) * 16)), int(round(float(p[1]) * 16))


#: Fractional bits of the fixed-point coordinates passed to OpenCV.
SHIFT = 4


class SkinCanvas:
    """The face model's texture plane, its fixed region weights and noise banks (see the module).

    Args:
        face_model: a ``MorphableModel`` (its mean shape, 68 landmark indices, mean albedo and
            ``labels["skin_mask"]`` or ``face_mask`` are used).
    """

    def __init__(self, face_model) -> None:
        V = face_model.mean_shape.detach().double().cpu().numpy()
        self.num_vertices = len(V)
        # Lambert azimuthal equal-area projection of the directions from a point behind the face.
        radius = 0.8
        centre = np.array([0.0, 0.05, V[:, 2].max() - radius])
        d = V - centre
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        k = np.sqrt(2.0 / np.maximum(1.0 + d[:, 2], 1e-6))
        uv = radius * k[:, None] * d[:, :2]  # [V, 2], x right, y up
        lo, hi = uv.min(0) - 6 * TEXEL, uv.max(0) + 6 * TEXEL
        self.width = int(np.ceil((hi[0] - lo[0]) / TEXEL))
        self.height = int(np.ceil((hi[1] - lo[1]) / TEXEL))
        tex = np.stack([(uv[:, 0] - lo[0]) / TEXEL, (hi[1] - uv[:, 1]) / TEXEL], 1)  # texel (col, row)
        self.texel = tex  # [V, 2] float64
        # remap maps, padded to a [rows, 256] grid (OpenCV limits map sides to 32767)
        cols = 256
        rows = -(-len(V) // cols)
        pad = rows * cols - len(V)
        self._map_x = np.pad(tex[:, 0], (0, pad)).reshape(rows, cols).astype(np.float32)
        self._map_y = np.pad(tex[:, 1], (0, pad)).reshape(rows, cols).astype(np.float32)
        self.lm = tex[face_model.landmark_idx.cpu().numpy()]  # [68, 2] texel coordinates
        self.mean_tex = face_model.mean_tex.detach().float().cpu().numpy()
        skin = getattr(face_model, "labels", {}).get("skin_mask")
        if skin is None or getattr(skin, "numel", lambda: 0)() != len(V):
            skin = face_model.face_mask
        self.skin = skin.cpu().numpy().reshape(-1).astype(np.float32)
        self.eye_width = float(np.mean([np.linalg.norm(self.lm[39] - self.lm[36]),
                                        np.linalg.norm(self.lm[45] - self.lm[42])]))
        self._fixed_regions()
        self._mouth_geometry(face_model, V)
        self._mouth_weights()

    # ------------------------------------------------------------------------------ helpers
    def canvas(self, channels: int = 1) -> np.ndarray:
        """A zero float32 texture canvas ``[H, W]`` or ``[H, W, C]``."""
        shape = (self.height, self.width) if channels == 1 else (self.height, self.width, channels)
        return np.zeros(shape, np.float32)

    def sample(self, canvas: np.ndarray) -> np.ndarray:
        """Sample a canvas ``[H, W(, C<=4)]`` at the vertices: ``[V]`` or ``[V, C]`` float32."""
        out = cv2.remap(canvas, self._map_x, self._map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if out.ndim == 2:
            return out.reshape(-1)[: self.num_vertices]
        return out.reshape(-1, out.shape[-1])[: self.num_vertices]

    def noise(self, rng: np.random.Generator, scale: float, channels: int = 1) -> np.ndarray:
        """Smooth zero-mean noise on the texture plane with features ``scale`` texels big, unit std."""
        sw = max(2, int(round(self.width / scale)))
        sh = max(2, int(round(self.height / scale)))
        small = rng.standard_normal((sh, sw, channels) if channels > 1 else (sh, sw)).astype(np.float32)
        out = cv2.resize(small, (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        return out / max(float(out.std()), 1e-6)

    def _poly(self, idx, dilate: float = 0.0, blur: float = 0.0) -> np.ndarray:
        c = self.canvas()
        cv2.fillPoly(c, [texel_polygon(self.lm[list(idx)])], 1.0, cv2.LINE_AA, SHIFT)
        if dilate > 0:
            k = int(2 * round(dilate) + 1)
            c = cv2.dilate(c, np.ones((k, k), np.uint8))
        if blur > 0:
            c = cv2.GaussianBlur(c, (0, 0), blur)
        return c

    def _fixed_regions(self) -> None:
        """Region weights per vertex that do not change between faces."""
        lm = self.lm
        ew = self.eye_width
        self.eye_r = self.sample(self._poly(range(36, 42), dilate=1.0))  # image-left eye
        self.eye_l = self.sample(self._poly(range(42, 48), dilate=1.0))
        self.eye = np.maximum(self.eye_l, self.eye_r)
        outer = self._poly(range(48, 60), blur=0.8)
        inner = self._poly(range(60, 68), dilate=1.0)
        # the closed mouth slit: the model's dark interior, or the inner-lip polygon
        dark = np.clip((0.25 - self.mean_tex.mean(1)) / 0.1, 0, 1) * (self.sample(outer) > 0.3)
        self.mouth = np.maximum(self.sample(inner), dark).astype(np.float32)
        self.lips = np.clip(self.sample(outer) - self.mouth, 0, 1)
        # mouth interior: relative height between the lower and upper inner lip (teeth at the top)
        up_x, up_y = lm[[60, 61, 62, 63, 64], 0], lm[[60, 61, 62, 63, 64], 1]
        lo_x, lo_y = lm[[60, 67, 66, 65, 64], 0], lm[[60, 67, 66, 65, 64], 1]
        tx = self.texel[:, 0]
        yu = np.interp(tx, up_x, up_y)
        yl = np.interp(tx, lo_x, lo_y)
        self.mouth_t = np.clip((yl - self.texel[:, 1]) / np.maximum(yl - yu, 0.5), 0, 1).astype(np.float32)
        # eye openings: relative height between the upper (0) and the lower (1) lid margin
        self.eye_t = np.ones(len(tx), np.float32)
        for up, low in (([36, 37, 38, 39], [36, 41, 40, 39]), ([42, 43, 44, 45], [42, 47, 46, 45])):
            yu = np.interp(tx, lm[up, 0], lm[up, 1])
            yl = np.interp(tx, lm[low, 0], lm[low, 1])
            t = np.clip((self.texel[:, 1] - yu) / np.maximum(yl - yu, 0.5), 0, 1)
            inside = (tx >= lm[up, 0].min()) & (tx <= lm[up, 0].max())
            self.eye_t = np.where(inside, t, self.eye_t).astype(np.float32)
        # the model's own painted brows, to be replaced by hair-like ones

        dirn = (MEAN_SKIN - BROW_COLOUR).astype(np.float32)
        proj = ((MEAN_SKIN[None].astype(np.float32) - self.mean_tex) @ dirn) / float(dirn @ dirn)
        band = self.canvas()
        for side in (range(17, 22), range(22, 27)):
            pts = lm[list(side)]
            cv2.polylines(band, [texel_polygon(pts)], False, 1.0, int(round(0.5 * ew)), cv2.LINE_AA, SHIFT)
        band = self.sample(cv2.GaussianBlur(band, (0, 0), 2.0))
        self.old_brows = np.clip((proj - 0.08) / 0.55, 0, 1) * np.clip(band * 1.5, 0, 1) * (1 - self.eye)
        band = np.clip(band * 3.0, 0, 1) * (1 - self.eye)
        # beard areas
        self.mustache_area = self.sample(self._beard_poly("mustache"))
        self.chin_area = self.sample(self._beard_poly("chin"))
        self.cheek_beard_area = self.sample(self._beard_poly("cheeks"))
        self.sideburn_area = self.sample(self._beard_poly("sideburns"))
        # cheeks (blush, freckles), nose, forehead, T-zone
        c = self.canvas()
        for a, b, n in ((2, 3, 31), (14, 13, 35)):
            centre = 0.45 * (lm[a] + lm[b]) / 2 + 0.35 * lm[n] + 0.2 * (lm[36] if a == 2 else lm[45])
            cv2.ellipse(c, tuple(int(v) for v in centre), (int(0.55 * ew), int(0.42 * ew)), 0, 0, 360, 1.0, -1)
        self.cheeks = self.sample(cv2.GaussianBlur(c, (0, 0), 0.3 * ew))
        self.nose = self.sample(self._poly([27, 31, 32, 33, 34, 35], dilate=0.15 * ew, blur=0.15 * ew))
        fh = self.canvas()
        top = lm[[17, 19, 24, 26], 1].min()
        cv2.rectangle(fh, (int(lm[17, 0]), 0), (int(lm[26, 0]), int(top - 0.25 * ew)), 1.0, -1)
        self.forehead = self.sample(cv2.GaussianBlur(fh, (0, 0), 0.4 * ew))
        self.skin_free = (self.skin * (1 - self.eye) * (1 - self.mouth) * (1 - 0.7 * self.lips)).astype(np.float32)
        self.brow_band = band
        zone = self.canvas()
        for idx in (range(36, 42), range(42, 48)):
            cv2.fillPoly(zone, [texel_polygon(lm[list(idx)])], 1.0, cv2.LINE_AA, SHIFT)
        self.eye_zone = self.sample(cv2.dilate(zone, np.ones((int(0.3 * ew) | 1,) * 2, np.uint8)))
        shadow = self.canvas()
        for eye, brow in ((range(36, 40), range(17, 22)), (range(42, 46), range(22, 27))):
            e = lm[list(eye)]
            upper = e + (lm[list(brow)].mean(0) - e.mean(0)) * 0.75
            cv2.fillPoly(shadow, [texel_polygon(np.concatenate([e, upper[::-1]]))], 1.0, cv2.LINE_AA, SHIFT)
        self.eye_shadow_zone = self.sample(cv2.dilate(shadow, np.ones((int(0.4 * ew) | 1,) * 2, np.uint8)))
        self._freckle_region = self.sample(np.clip(
            1.5 * cv2.GaussianBlur(self._region_canvas("freckles"), (0, 0), 0.4 * ew), 0, 1))
        self._age_region = self.sample(self._region_canvas("age"))
        self._mole_candidates = np.flatnonzero(self.skin_free > 0.9)
        self._ref_idx = np.flatnonzero(self.skin_free > 0.5)[::13]
        fh_idx = np.flatnonzero((self.forehead > 0.5) & (self.skin_free > 0.5) & (self.old_brows < 0.05))[::5]
        self._forehead_idx = fh_idx if len(fh_idx) else self._ref_idx
        self._prepare_fast_paths()

    def _mouth_geometry(self, face_model, V: np.ndarray) -> None:
        """Per vertex of the mouth's inside: ``mouth_depth`` (model units behind the front of the
        mouth at the same x), ``mouth_open_t`` (0 at the upper inner lip, 1 at the lower one, in
        the mouth opened wide by the model's ``jawOpen`` blendshape; without it :attr:`mouth_t`'s
        reverse) and ``mouth_x`` (the mean shape's x)."""
        inside = self.mouth > 0.3
        self.mouth_x = V[:, 0].astype(np.float32)
        self.mouth_depth = np.zeros(len(V), np.float32)
        self.mouth_open_t = (1 - self.mouth_t).astype(np.float32)
        if not inside.any():
            return
        x, z = V[inside, 0], V[inside, 2]
        bins = np.round(x / 0.02).astype(np.int64)
        front = {b: z[bins == b].max() for b in np.unique(bins)}
        self.mouth_depth[inside] = np.clip(np.array([front[b] for b in bins]) - z, 0, None)
        labels = getattr(face_model, "labels", {})
        names, from_target = labels.get("exp_target_names"), labels.get("exp_from_target")
        if isinstance(names, list) and "jawOpen" in names and from_target is not None:
            w = torch.zeros(from_target.shape[1], dtype=torch.float64)
            w[names.index("jawOpen")] = 1.0
            c = (from_target.double() @ w).float()[None]
            with torch.no_grad():
                opened = face_model.shape(torch.zeros(1, face_model.n_id), c)[0].cpu().numpy()
            lm = face_model.landmark_idx.cpu().numpy()
            def lip_curve(idx):  # the inner lip line y(x) of the opened mouth
                pts = opened[lm[idx], :2]
                pts = pts[np.argsort(pts[:, 0])]
                return np.interp(V[:, 0], pts[:, 0], pts[:, 1])

            up, lo = lip_curve([60, 61, 62, 63, 64]), lip_curve([60, 67, 66, 65, 64])
            t = (up - opened[:, 1]) / np.maximum(up - lo, 1e-3)
            self.mouth_open_t[inside] = np.clip(t[inside], 0, 1)

    def _mouth_weights(self) -> None:
        """The fixed weights of the mouth's inside over :attr:`lip_set` (``mouth_weights``): what
        :meth:`SkinPainter._mouth_inside` draws that no random choice moves (depth bands of teeth,
        gums and tongue, the wet inner edge, the light reaching in)."""
        i = self.lip_set.idx
        d, t, x = self.mouth_depth[i], self.mouth_open_t[i], np.abs(self.mouth_x[i])
        behind_lips = smoothstep((d - 0.004) / 0.006)  # teeth stand just behind the lips
        self.mouth_weights = {
            "t": t, "x": x, "behind_lips": behind_lips,
            "upper_teeth_depth": 1 - smoothstep((d - 0.045) / 0.01),
            "lower_teeth": behind_lips * smoothstep((t - 0.85) / 0.05) * (1 - smoothstep((d - 0.022) / 0.008)),
            "gums_front": smoothstep((d - 0.045) / 0.01), "gums_back": 1 - smoothstep((d - 0.06) / 0.01),
            "tongue": smoothstep((t - 0.55) / 0.1) * smoothstep((d - 0.022) / 0.008),
            "groove": (1 - 0.3 * np.exp(-((x / 0.02) ** 2)))[:, None],
            "wet": (1 - smoothstep((d - 0.004) / 0.008))[:, None],
            "light": np.clip(np.exp(-d / 0.12), 0.3, 1.0)[:, None],  # the deeper, the less light reaches it
            "inside": (self.mouth[i] * (1 - self.lips[i]))[:, None],
        }

    def _beard_poly(self, part: str) -> np.ndarray:
        lm = self.lm
        ew = self.eye_width
        c = self.canvas()
        if part == "mustache":
            pts = np.concatenate([lm[[48]] + [-0.15 * ew, 0.05 * ew], lm[[31, 32, 33, 34, 35]] + [0, 0.1 * ew],
                                  lm[[54]] + [0.15 * ew, 0.05 * ew], lm[[53, 52, 51, 50, 49]] - [0, 0.05 * ew]])
            cv2.fillPoly(c, [texel_polygon(pts)], 1.0, cv2.LINE_AA, SHIFT)
            return cv2.GaussianBlur(c, (0, 0), 0.08 * ew)
        if part == "chin":
            pts = np.concatenate([lm[[59, 58, 57, 56, 55]] + [0, 0.1 * ew], lm[[10, 9, 8, 7, 6]] + [0, 0.05 * ew]])
            cv2.fillPoly(c, [texel_polygon(pts)], 1.0, cv2.LINE_AA, SHIFT)
            return cv2.GaussianBlur(c, (0, 0), 0.12 * ew)
        if part == "cheeks":
            jaw = lm[2:15]
            # the upper edge: from below the ears down towards the mouth corners
            upper = np.array([lm[1] * 0.7 + lm[31] * 0.3, lm[48] + [-0.35 * ew, -0.25 * ew],
                              lm[54] + [0.35 * ew, -0.25 * ew], lm[15] * 0.7 + lm[35] * 0.3])
            pts = np.concatenate([jaw + (jaw - jaw.mean(0)) * 0.04, upper[::-1]])
            cv2.fillPoly(c, [texel_polygon(pts)], 1.0, cv2.LINE_AA, SHIFT)
            return cv2.GaussianBlur(c, (0, 0), 0.15 * ew)
        # sideburns: in front of the ears, from the top of the jaw line up to the temples
        for a, b in ((0, 1), (16, 15)):
            top = lm[a] + (lm[a] - lm[b]) * 1.5
            cv2.line(c, tuple(int(v) for v in top), tuple(int(v) for v in lm[b] * 0.6 + lm[b + (1 if a == 0 else -1)] * 0.4),
                     1.0, max(1, int(0.35 * ew)))
        return cv2.GaussianBlur(c, (0, 0), 0.1 * ew)

    # ------------------------------------------------------------ region subsets, noise banks
    def _prepare_fast_paths(self) -> None:
        """Vertex subsets per region (layers only touch their region) and the noise banks."""
        def subset(weight, thresh=1e-3):
            return RegionSubset(self, np.flatnonzero(weight > thresh))

        self.brow_set = subset(np.maximum(self.old_brows, self.brow_band))
        self.eye_set = subset(self.eye_zone)
        self.lip_set = subset(np.maximum(self.lips, self.mouth))
        self.beard_set = subset(np.maximum.reduce([self.mustache_area, self.chin_area, self.cheek_beard_area,
                                                   self.sideburn_area]))
        self.shadow_set = subset(self.eye_shadow_zone)
        self.cheek_set = subset(self.cheeks)
        self.freckle_set = subset(self._freckle_region * self.skin_free)
        self.age_set = subset(self._age_region * self.skin_free)
        # Noise banks: fixed random fields twice the canvas size; a face samples them at a random
        # offset (a shifted window of a random field is as random as a fresh one, and costs one remap).
        bank_rng = np.random.default_rng(20261201)
        H, W = self.height, self.width

        def field(scale):
            sh, sw = max(2, int(round(2 * H / scale))), max(2, int(round(2 * W / scale)))
            small = bank_rng.standard_normal((sh, sw)).astype(np.float32)
            big = cv2.resize(small, (2 * W, 2 * H), interpolation=cv2.INTER_CUBIC)
            return big / max(float(big.std()), 1e-6)

        # channels: fine luminance (pores to mottling), coarse luminance (blotches), fine redness,
        # coarse redness
        # (the fine luminance includes pores, about a millimetre)
        fine = [field(2.5), field(7.0), field(2.5), field(7.0)]
        coarse = [field(22.0), field(60.0), field(22.0), field(60.0)]
        self._bank_skin = np.ascontiguousarray(np.stack(
            [0.5 * field(1.2) + 0.45 * fine[0] + 0.5 * fine[1], 0.7 * coarse[0] + 0.5 * coarse[1],
             0.3 * fine[2] + 0.6 * fine[3], 0.8 * coarse[2] + 0.6 * coarse[3]], -1), np.float32)
        # channels: freckle-sized spots, age-spot-sized patches, white noise per texel (stubble)
        # channels: freckle-sized spots, age-spot-sized patches, white noise per texel (stubble)
        white = bank_rng.standard_normal((2 * H, 2 * W)).astype(np.float32)
        self._bank_spots = np.ascontiguousarray(np.stack([field(1.6), field(7.0), white], -1), np.float32)
        self._vertex_bank = bank_rng.standard_normal(4 * self.num_vertices).astype(np.float32)

    def _bank_sample(self, rng: np.random.Generator, bank: np.ndarray, subset=None) -> np.ndarray:
        """Sample a noise bank at the vertices (or a subset) shifted by a random offset, ``[n, C]``."""
        oy = np.float32(rng.integers(0, bank.shape[0] - self.height + 1))
        ox = np.float32(rng.integers(0, bank.shape[1] - self.width + 1))
        if subset is None:
            mx, my, n = self._map_x, self._map_y, self.num_vertices
        else:  # local maps: add the subset's offset back
            mx, my, n = subset._mx + np.float32(subset.offset[0]), subset._my + np.float32(subset.offset[1]), subset.n
        out = cv2.remap(bank, mx + ox, my + oy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out.reshape(-1, bank.shape[-1])[:n]

    def _vertex_noise(self, rng: np.random.Generator) -> np.ndarray:
        """Unit white noise per vertex (a random window of a fixed bank), ``[V]``."""
        off = int(rng.integers(0, len(self._vertex_bank) - self.num_vertices + 1))
        return self._vertex_bank[off:off + self.num_vertices]

    def _region_canvas(self, kind: str) -> np.ndarray:
        """Where freckles (cheeks and nose bridge) or age spots (forehead, temples, cheeks) go."""
        lm = self.lm
        ew = self.eye_width
        c = self.canvas()
        if kind == "freckles":
            pts = np.array([lm[1] * 0.6 + lm[36] * 0.4, lm[39] + [0, 0.5 * ew], lm[27], lm[42] + [0, 0.5 * ew],
                            lm[15] * 0.6 + lm[45] * 0.4, lm[13] * 0.5 + lm[54] * 0.5, lm[35], lm[31],
                            lm[3] * 0.5 + lm[48] * 0.5])
            cv2.fillPoly(c, [texel_polygon(pts)], 1.0, cv2.LINE_AA, SHIFT)
            return c
        cv2.rectangle(c, (int(lm[0, 0]), 0), (int(lm[16, 0]), int(lm[27, 1])), 1.0, -1)
        for a, b in ((2, 31), (14, 35)):
            cv2.ellipse(c, fixed_point((lm[a] + lm[b]) / 2), fixed_point((0.8 * ew, 0.6 * ew)), 0, 0, 360, 1.0, -1,
                        cv2.LINE_AA, SHIFT)
        return cv2.GaussianBlur(c, (0, 0), 0.4 * ew)


class RegionSubset:
    """A subset of a painter's vertices with a local canvas (its bounding box on the texture
    plane, plus a margin) and remap maps, so layers that only touch a region only pay for it.

    Draw in local coordinates: ``loc(points)`` shifts texture-plane points into the local canvas.
    """

    def __init__(self, painter: SkinCanvas, idx: np.ndarray, margin: int = 4) -> None:
        self.idx = idx.astype(np.int64)
        self.n = len(idx)
        tex = painter.texel[self.idx] if self.n else np.zeros((1, 2))
        x0 = int(max(0, np.floor(tex[:, 0].min()) - margin))
        y0 = int(max(0, np.floor(tex[:, 1].min()) - margin))
        x1 = int(min(painter.width, np.ceil(tex[:, 0].max()) + margin + 1))
        y1 = int(min(painter.height, np.ceil(tex[:, 1].max()) + margin + 1))
        self.offset = np.array([x0, y0], np.float64)
        self.shape = (y1 - y0, x1 - x0)
        cols = 128
        rows = max(1, -(-self.n // cols))
        pad = rows * cols - self.n
        self._mx = np.pad(tex[: self.n, 0] - x0, (0, pad)).reshape(rows, cols).astype(np.float32)
        self._my = np.pad(tex[: self.n, 1] - y0, (0, pad)).reshape(rows, cols).astype(np.float32)

    def canvas(self, channels: int = 1) -> np.ndarray:
        """A zero float32 local canvas ``[h, w]`` or ``[h, w, C]``."""
        return np.zeros(self.shape if channels == 1 else self.shape + (channels,), np.float32)

    def loc(self, points: np.ndarray) -> np.ndarray:
        """Texture-plane points to local canvas coordinates."""
        return np.asarray(points, np.float64) - self.offset

    def sample(self, canvas: np.ndarray) -> np.ndarray:
        """Sample a local canvas at the subset's vertices: ``[n]`` or ``[n, C]``."""
        out = cv2.remap(canvas, self._mx, self._my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if out.ndim == 2:
            return out.reshape(-1)[: self.n]
        return out.reshape(-1, out.shape[-1])[: self.n]
