"""Per-vertex albedo beyond the morphable model's basis: skin detail, brows, beards, make-up, eyes.

A morphable model's albedo basis (80 smooth directions for the default model) cannot show pores,
freckles, hair-like brows or stubble. :class:`SkinPainter` adds them on top of the basis albedo of
each synthetic face, so the ground-truth ``colors`` of an item (the exact per-vertex albedo that was
rendered) carries texture detail the basis cannot reach.

How it works: the face model's mean shape is unwrapped once onto a 2-D texture plane (a Lambert
azimuthal equal-area projection seen from a point behind the face, 1 texel = 0.01 model units =
1 mm, about one vertex per texel; the plane looks like a frontal picture of the face). The model's
68 landmarks on that plane place every region (eyes, brows, lips, beard area, cheeks). Per item,
OpenCV paints random layers on small float canvases (noise at several scales, brow hairs, beard
density, make-up shapes, freckles, moles, scars, tan lines, irises), and ``cv2.remap`` samples them
at the vertices; the layers are then combined with the basis albedo per vertex. Everything is drawn
from the item's own ``numpy.random.Generator``, so a face is reproducible per ``(seed, index)``.

The labels it returns are the drawn amounts (scalars in [0, 1] unless said otherwise), named in
:data:`APPEARANCE_LABELS`.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["SkinPainter", "APPEARANCE_LABELS", "HAIR_COLOURS"]

#: Scalar appearance labels :meth:`SkinPainter.paint` returns (all floats; counts for ``moles``).
APPEARANCE_LABELS = (
    "skin_detail", "freckles", "age_spots", "moles", "scar", "tan_lines",
    "eyebrow_darkness", "eyebrow_thickness", "beard_density", "mustache_density", "stubble",
    "lipstick", "eye_shadow", "eyeliner", "blush", "iris_lightness",
)

_TEXEL = 0.01  # model units (decimetres) per texel

#: Natural hair colours (linear-ish RGB in [0, 1]): black, dark brown, brown, light brown,
#: auburn, red, dark blonde, blonde, platinum, grey, white.
HAIR_COLOURS = np.array(
    [
        [0.035, 0.028, 0.025], [0.08, 0.055, 0.04], [0.17, 0.11, 0.07], [0.30, 0.20, 0.12],
        [0.33, 0.14, 0.06], [0.50, 0.22, 0.08], [0.42, 0.32, 0.18], [0.66, 0.52, 0.32],
        [0.82, 0.74, 0.58], [0.46, 0.44, 0.42], [0.78, 0.77, 0.75],
    ],
    np.float32,
)
_IRIS = np.array(
    [
        [0.17, 0.09, 0.04], [0.26, 0.14, 0.06], [0.33, 0.22, 0.10], [0.30, 0.30, 0.14],
        [0.22, 0.32, 0.28], [0.30, 0.40, 0.50], [0.38, 0.46, 0.56], [0.40, 0.40, 0.40],
    ],
    np.float32,
)
_LIPSTICK = np.array(
    [
        [0.55, 0.05, 0.08], [0.70, 0.10, 0.12], [0.45, 0.08, 0.15], [0.75, 0.35, 0.40],
        [0.60, 0.30, 0.28], [0.35, 0.12, 0.10], [0.80, 0.45, 0.45], [0.30, 0.05, 0.15],
    ],
    np.float32,
)
_SHADOW = np.array(
    [
        [0.35, 0.25, 0.20], [0.25, 0.18, 0.15], [0.40, 0.30, 0.45], [0.25, 0.30, 0.45],
        [0.15, 0.15, 0.17], [0.55, 0.45, 0.35], [0.30, 0.35, 0.25], [0.50, 0.35, 0.40],
    ],
    np.float32,
)
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pts(points: np.ndarray) -> np.ndarray:
    """Float texel points to OpenCV's fixed-point int32 polygon (4 fractional bits)."""
    return np.round(np.asarray(points, np.float64) * 16).astype(np.int32)


_SHIFT = 4


class SkinPainter:
    """Paints per-vertex albedo layers for one face model.

    Args:
        face_model: a ``MorphableModel`` (its mean shape, 68 landmark indices, mean albedo and
            ``labels["skin_mask"]`` or ``face_mask`` are used).

    The constructor unwraps the mean shape and prepares the fixed region weights (about 0.1 s);
    :meth:`paint` then costs about 2 ms per face at the default model's 34.5k vertices.
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
        lo, hi = uv.min(0) - 6 * _TEXEL, uv.max(0) + 6 * _TEXEL
        self.width = int(np.ceil((hi[0] - lo[0]) / _TEXEL))
        self.height = int(np.ceil((hi[1] - lo[1]) / _TEXEL))
        tex = np.stack([(uv[:, 0] - lo[0]) / _TEXEL, (hi[1] - uv[:, 1]) / _TEXEL], 1)  # texel (col, row)
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
        cv2.fillPoly(c, [_pts(self.lm[list(idx)])], 1.0, cv2.LINE_AA, _SHIFT)
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
        from pyfaid.facemodel.texture import BROW_COLOUR, MEAN_SKIN

        dirn = (MEAN_SKIN - BROW_COLOUR).astype(np.float32)
        proj = ((MEAN_SKIN[None].astype(np.float32) - self.mean_tex) @ dirn) / float(dirn @ dirn)
        band = self.canvas()
        for side in (range(17, 22), range(22, 27)):
            pts = lm[list(side)]
            cv2.polylines(band, [_pts(pts)], False, 1.0, int(round(0.5 * ew)), cv2.LINE_AA, _SHIFT)
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
            cv2.fillPoly(zone, [_pts(lm[list(idx)])], 1.0, cv2.LINE_AA, _SHIFT)
        self.eye_zone = self.sample(cv2.dilate(zone, np.ones((int(0.3 * ew) | 1,) * 2, np.uint8)))
        shadow = self.canvas()
        for eye, brow in ((range(36, 40), range(17, 22)), (range(42, 46), range(22, 27))):
            e = lm[list(eye)]
            upper = e + (lm[list(brow)].mean(0) - e.mean(0)) * 0.75
            cv2.fillPoly(shadow, [_pts(np.concatenate([e, upper[::-1]]))], 1.0, cv2.LINE_AA, _SHIFT)
        self.eye_shadow_zone = self.sample(cv2.dilate(shadow, np.ones((int(0.4 * ew) | 1,) * 2, np.uint8)))
        self._freckle_region = self.sample(np.clip(
            1.5 * cv2.GaussianBlur(self._region_canvas("freckles"), (0, 0), 0.4 * ew), 0, 1))
        self._age_region = self.sample(self._region_canvas("age"))
        self._mole_candidates = np.flatnonzero(self.skin_free > 0.9)
        self._ref_idx = np.flatnonzero(self.skin_free > 0.5)[::13]
        fh_idx = np.flatnonzero((self.forehead > 0.5) & (self.skin_free > 0.5) & (self.old_brows < 0.05))[::5]
        self._forehead_idx = fh_idx if len(fh_idx) else self._ref_idx
        self._prepare_fast_paths()

    def _beard_poly(self, part: str) -> np.ndarray:
        lm = self.lm
        ew = self.eye_width
        c = self.canvas()
        if part == "mustache":
            pts = np.concatenate([lm[[48]] + [-0.15 * ew, 0.05 * ew], lm[[31, 32, 33, 34, 35]] + [0, 0.1 * ew],
                                  lm[[54]] + [0.15 * ew, 0.05 * ew], lm[[53, 52, 51, 50, 49]] - [0, 0.05 * ew]])
            cv2.fillPoly(c, [_pts(pts)], 1.0, cv2.LINE_AA, _SHIFT)
            return cv2.GaussianBlur(c, (0, 0), 0.08 * ew)
        if part == "chin":
            pts = np.concatenate([lm[[59, 58, 57, 56, 55]] + [0, 0.1 * ew], lm[[10, 9, 8, 7, 6]] + [0, 0.05 * ew]])
            cv2.fillPoly(c, [_pts(pts)], 1.0, cv2.LINE_AA, _SHIFT)
            return cv2.GaussianBlur(c, (0, 0), 0.12 * ew)
        if part == "cheeks":
            jaw = lm[2:15]
            # the upper edge: from below the ears down towards the mouth corners
            upper = np.array([lm[1] * 0.7 + lm[31] * 0.3, lm[48] + [-0.35 * ew, -0.25 * ew],
                              lm[54] + [0.35 * ew, -0.25 * ew], lm[15] * 0.7 + lm[35] * 0.3])
            pts = np.concatenate([jaw + (jaw - jaw.mean(0)) * 0.04, upper[::-1]])
            cv2.fillPoly(c, [_pts(pts)], 1.0, cv2.LINE_AA, _SHIFT)
            return cv2.GaussianBlur(c, (0, 0), 0.15 * ew)
        # sideburns: in front of the ears, from the top of the jaw line up to the temples
        for a, b in ((0, 1), (16, 15)):
            top = lm[a] + (lm[a] - lm[b]) * 1.5
            cv2.line(c, tuple(int(v) for v in top), tuple(int(v) for v in lm[b] * 0.6 + lm[b + (1 if a == 0 else -1)] * 0.4),
                     1.0, max(1, int(0.35 * ew)))
        return cv2.GaussianBlur(c, (0, 0), 0.1 * ew)

    # ------------------------------------------------------------------------------ painting
    def _prepare_fast_paths(self) -> None:
        """Vertex subsets per region (layers only touch their region) and the noise banks."""
        def subset(weight, thresh=1e-3):
            return _Subset(self, np.flatnonzero(weight > thresh))

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

    def paint(self, albedo: np.ndarray, rng: np.random.Generator, hair_colour: np.ndarray,
              male: float = 0.5, age: float = 0.5, detail: bool = True) -> tuple[np.ndarray, dict]:
        """Add the random layers to one face's basis albedo.

        Args:
            albedo: ``[V, 3]`` basis albedo (``mean_tex + tex_base @ tex``).
            rng: the item's generator.
            hair_colour: ``[3]`` the item's hair colour (brows and beards take it, darker).
            male: in [0, 1], how likely beards (vs make-up) are.
            age: in [0, 1], how likely age spots, grey beards and rough skin are.
            detail: False skips everything (returns the clipped basis albedo and zero labels).

        Returns:
            ``(albedo [V, 3] float32 in [0, 1], labels)``: the final albedo and a dict of
            :data:`APPEARANCE_LABELS` floats.
        """
        A = np.clip(np.asarray(albedo, np.float32), 0.0, 1.0)
        labels = {k: 0.0 for k in APPEARANCE_LABELS}
        if not detail:
            return A.copy(), labels
        hair_colour = np.asarray(hair_colour, np.float32)
        skin = self.skin_free
        ew = self.eye_width
        lum_ref = float((A[self._ref_idx] @ _LUMA).mean())
        fair = float(np.clip((lum_ref - 0.25) / 0.35, 0, 1))
        made_up = rng.random() < 0.55 * (1 - male) + 0.03

        # --- skin detail (luminance and redness noise at several scales) and spots, one canvas
        rough = float(np.clip(rng.beta(2.0, 3.0) * (0.6 + 0.8 * age) * (0.6 if made_up else 1.0), 0, 1))
        labels["skin_detail"] = rough
        wf, wc = (float(v) for v in rng.uniform(0.5, 1.5, 2))
        N = self._bank_sample(rng, self._bank_skin)  # [V, 4]
        spots = []  # (subset, darkening) pairs: freckles and age spots
        if rng.random() < 0.08 + 0.3 * fair:
            amount = float(rng.uniform(0.2, 1.0))
            labels["freckles"] = amount
            fs = self.freckle_set
            n = self._bank_sample(rng, self._bank_spots, fs)[:, 0]
            f = np.clip((n - (2.2 - 1.4 * amount)) / 0.6, 0, 1) * self._freckle_region[fs.idx]
            spots.append((fs.idx, f * np.float32(rng.uniform(0.25, 0.5))))
        if rng.random() < 0.15 + 0.6 * age ** 2:
            amount = float(min(1.0, rng.uniform(0.2, 1.0) * (0.4 + age)))
            labels["age_spots"] = amount
            ag = self.age_set
            n = self._bank_sample(rng, self._bank_spots, ag)[:, 1]
            f = np.clip((n - (2.6 - amount)) / 0.5, 0, 1) * self._age_region[ag.idx]
            spots.append((ag.idx, f * np.float32(rng.uniform(0.15, 0.35))))
        n_moles = int(rng.poisson(0.8))
        labels["moles"] = float(n_moles)
        extra = None  # signed luminance: moles (negative), scars and tan lines (positive)
        if n_moles:
            extra = self.canvas()
            for v in rng.choice(self._mole_candidates, size=n_moles):
                cv2.circle(extra, _pt(self.texel[v]), int(round(rng.uniform(0.6, 2.2) * 16)),
                           -float(rng.uniform(0.35, 0.65)), -1, cv2.LINE_AA, _SHIFT)
        if rng.random() < 0.04:  # a scar: a thin lighter line
            labels["scar"] = 1.0
            extra = self.canvas() if extra is None else extra
            p0 = self.texel[rng.choice(self._mole_candidates)]
            ang, length = rng.uniform(0, np.pi), rng.uniform(8, 35)
            t = np.linspace(-0.5, 0.5, 8)[:, None]
            bend = rng.normal(0, 0.15) * length
            pts = p0 + t * length * [np.cos(ang), np.sin(ang)] + (1 - 4 * t ** 2) * bend * [-np.sin(ang), np.cos(ang)]
            scar = np.zeros_like(extra)
            cv2.polylines(scar, [_pts(pts)], False, rng.uniform(0.12, 0.3), int(rng.integers(1, 3)), cv2.LINE_AA, _SHIFT)
            extra += cv2.GaussianBlur(scar, (0, 0), 0.6)
        if rng.random() < 0.04:  # tan lines: lighter skin that a hat or sunglasses shaded
            labels["tan_lines"] = 1.0
            extra = self.canvas() if extra is None else extra
            c = self.canvas()
            if rng.random() < 0.5:
                for a, b in ((36, 39), (42, 45)):
                    cc = (self.lm[a] + self.lm[b]) / 2
                    cv2.ellipse(c, _pt(cc), _pt((0.85 * ew, 0.55 * ew)), 0, 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)
                cv2.line(c, _pt(self.lm[39]), _pt(self.lm[42]), 1.0, max(1, int(0.15 * ew)), cv2.LINE_AA, _SHIFT)
            else:
                y = int(self.lm[[19, 24], 1].min() - rng.uniform(0.4, 1.0) * ew)
                cv2.rectangle(c, (0, 0), (self.width, y), 1.0, -1)
            extra += rng.uniform(0.08, 0.2) * cv2.GaussianBlur(c, (0, 0), 1.2)
        amp = 0.01 + 0.035 * rough
        lum = N[:, 0] * np.float32(amp * wf)
        lum += N[:, 1] * np.float32(amp * wc)
        if extra is not None:
            lum += self.sample(extra)
        lum *= skin
        lum += 1.0
        red = N[:, 2] * np.float32(wf)
        red += N[:, 3] * np.float32(wc)
        red *= skin
        red *= np.float32((0.005 + 0.012 * rough) * min(1.0, lum_ref / 0.45))  # relative to the skin's lightness
        np.maximum(red, red * np.float32(0.4), out=red)  # blotches redden more than they pale
        A = A * lum[:, None]
        A += red[:, None] * np.array([1.0, -0.4, -0.3], np.float32)
        for idx, f in spots:  # darker and browner
            f = f * skin[idx]
            A[idx] -= f[:, None] * (A[idx] * np.array([0.45, 0.6, 0.72], np.float32))

        # --- eyebrows: replace the model's painted brows by hair strokes
        brow_colour = np.clip(hair_colour * rng.uniform(0.45, 0.85) + rng.normal(0, 0.008, 3), 0.01, 1).astype(np.float32)
        if hair_colour.mean() > 0.4 and rng.random() < 0.75:  # light/grey hair: often darker brows
            brow_colour = (brow_colour * rng.uniform(0.35, 0.65)).astype(np.float32)
        skin_ref = self._skin_reference(A)
        thick = float(rng.beta(2.2, 2.2))
        density = float(rng.uniform(0.35, 1.0))
        bs = self.brow_set
        alpha = np.clip(bs.sample(self._brows(rng, thick, density, bs)), 0, 1) * (1 - self.eye[bs.idx])
        erase = (self.old_brows[bs.idx] * rng.uniform(0.85, 1.0))[:, None]
        Ab = A[bs.idx] * (1 - erase) + skin_ref * erase
        A[bs.idx] = Ab * (1 - alpha[:, None]) + brow_colour * alpha[:, None]
        contrast = max(0.0, 1.0 - float(brow_colour @ _LUMA) / max(lum_ref, 1e-3))
        labels["eyebrow_thickness"] = thick
        labels["eyebrow_darkness"] = float(np.clip(contrast * (0.4 + 0.6 * density), 0, 1))

        # --- beards and stubble
        if rng.random() < 0.6 * male ** 1.5:
            labels.update(self._beard(A, rng, hair_colour, age))

        # --- natural lip colour, make-up, eyes, mouth interior
        ls = self.lip_set
        lip_shift = np.array([rng.normal(0.02, 0.04), rng.normal(-0.02, 0.03), rng.normal(-0.01, 0.03)], np.float32)
        A[ls.idx] += (self.lips[ls.idx] * (1 - 0.5 * self.mouth[ls.idx]))[:, None] * lip_shift
        if made_up:
            labels.update(self._makeup(A, rng))
        labels["iris_lightness"] = self._eyes(A, rng, labels["eyeliner"])
        teeth = np.array([0.62, 0.58, 0.5], np.float32) * rng.uniform(0.7, 1.05)  # in the mouth's shade
        inside = np.array([0.2, 0.06, 0.06], np.float32) * rng.uniform(0.6, 1.2)
        t = (0.8 * _smoothstep((self.mouth_t[ls.idx] - 0.72) / 0.2))[:, None]
        mw = (self.mouth[ls.idx] * (1 - self.lips[ls.idx]))[:, None]
        A[ls.idx] = A[ls.idx] * (1 - mw) + (inside * (1 - t) + teeth * t) * mw
        np.clip(A, 0.0, 1.0, out=A)
        return A, labels

    def _skin_reference(self, A: np.ndarray) -> np.ndarray:
        """The face's skin colour above the brows (what erased brows become), ``[3]``."""
        return A[self._forehead_idx].mean(0)

    def _region_canvas(self, kind: str) -> np.ndarray:
        """Where freckles (cheeks and nose bridge) or age spots (forehead, temples, cheeks) go."""
        lm = self.lm
        ew = self.eye_width
        c = self.canvas()
        if kind == "freckles":
            pts = np.array([lm[1] * 0.6 + lm[36] * 0.4, lm[39] + [0, 0.5 * ew], lm[27], lm[42] + [0, 0.5 * ew],
                            lm[15] * 0.6 + lm[45] * 0.4, lm[13] * 0.5 + lm[54] * 0.5, lm[35], lm[31],
                            lm[3] * 0.5 + lm[48] * 0.5])
            cv2.fillPoly(c, [_pts(pts)], 1.0, cv2.LINE_AA, _SHIFT)
            return c
        cv2.rectangle(c, (int(lm[0, 0]), 0), (int(lm[16, 0]), int(lm[27, 1])), 1.0, -1)
        for a, b in ((2, 31), (14, 35)):
            cv2.ellipse(c, _pt((lm[a] + lm[b]) / 2), _pt((0.8 * ew, 0.6 * ew)), 0, 0, 360, 1.0, -1, cv2.LINE_AA, _SHIFT)
        return cv2.GaussianBlur(c, (0, 0), 0.4 * ew)

    def _brows(self, rng: np.random.Generator, thick: float, density: float, sub: "_Subset") -> np.ndarray:
        """Hair-stroke brows on the subset's local canvas (alpha in [0, 1])."""
        ew = self.eye_width
        soft = sub.canvas()
        lines = []
        head_h = ew * (0.22 + 0.32 * thick)  # brow height at its inner end (texels)
        arch = rng.normal(0.03, 0.06) * ew
        lift = rng.normal(0.0, 0.06) * ew
        tail = rng.uniform(0.85, 1.1)
        for side in (range(21, 16, -1), range(22, 27)):  # inner end first
            P = sub.loc(self.lm[list(side)])
            P[:, 1] -= lift
            t_knots = np.linspace(0, 1, len(P))
            P[-1] = P[-2] + (P[-1] - P[-2]) * tail
            P[:, 1] -= arch * np.sin(np.pi * np.clip(t_knots * 1.1, 0, 1))

            def at(t):
                return np.stack([np.interp(t, t_knots, P[:, 0]), np.interp(t, t_knots, P[:, 1])], -1)

            outward = float(np.sign(P[-1, 0] - P[0, 0]))
            tt = np.linspace(0, 1, 24)
            centre = at(tt)
            # the landmarks run along the brow's upper edge (300-W's convention): the brow hangs below
            hh = head_h * (1.0 - 0.6 * tt ** 1.3)
            top = centre - np.stack([np.zeros_like(hh), hh * (0.05 + 0.1 * np.sin(np.pi * tt))], 1)
            bot = centre + np.stack([np.zeros_like(hh), hh * 0.85], 1)
            cv2.fillPoly(soft, [_pts(np.concatenate([top, bot[::-1]]))], 1.0, cv2.LINE_AA, _SHIFT)
            n = int(density * (140 + 260 * thick) * (ew / 32.0) ** 2)
            t = rng.uniform(0, 1, n)
            h = head_h * (1.0 - 0.6 * t ** 1.3)
            off = rng.uniform(-0.1, 0.85, n) * h * (0.75 + 0.25 * rng.random(n))
            base = at(t) + np.stack([np.zeros(n), off], 1)
            # up at the inner end, then outward, converging to the brow's middle line
            ang_in = -np.pi / 2 + outward * 0.35
            ang_out = (0.0 if outward > 0 else np.pi) + outward * (-np.sign(off - 0.375 * h) * rng.uniform(0.15, 0.45, n))
            w = _smoothstep((t - 0.02) / 0.12)
            ang = ang_in * (1 - w) + ang_out * w + rng.normal(0, 0.12, n)
            length = rng.uniform(0.12, 0.26, n) * ew * (0.45 + 0.55 * w)  # the upright inner hairs are short
            tip = base + length[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
            lines.append(np.stack([base, tip], 1))
        lines = _pts(np.concatenate(lines))  # [n, 2, 2]
        group = rng.integers(0, 3, len(lines))
        c = sub.canvas()
        for g, value in enumerate((0.55, 0.8, 1.0)):
            sel = lines[group == g]
            if len(sel):
                cv2.polylines(c, list(sel), False, value, 1, cv2.LINE_AA, _SHIFT)
        c = cv2.GaussianBlur(c, (0, 0), 0.45)
        soft = cv2.GaussianBlur(soft, (0, 0), 0.12 * ew)
        soft = cv2.GaussianBlur(soft, (0, 0), 0.08 * ew)
        return np.clip(c * (0.75 + 0.35 * density) + soft * (0.15 + 0.3 * density * thick), 0, 1)

    def _beard(self, A, rng, hair_colour, age) -> dict:
        """Stubble, moustaches, goatees and full beards (density maps times hair texture), in place."""
        labels = {}
        style = rng.choice(["stubble", "shadow", "mustache", "goatee", "full", "chinstrap"],
                           p=[0.25, 0.2, 0.12, 0.15, 0.2, 0.08])
        colour = hair_colour.copy()
        if rng.random() < age:  # greying
            colour = colour * (1 - 0.6 * age) + np.array([0.55, 0.54, 0.52], np.float32) * 0.6 * age
        colour = np.clip(colour * rng.uniform(0.7, 1.05), 0.01, 1).astype(np.float32)
        areas = {
            "stubble": (1.0, 1.0, 1.0, 0.8), "shadow": (1.0, 1.0, 1.0, 0.6),
            "mustache": (1.0, 0.0, 0.0, 0.0), "goatee": (1.0, 1.0, 0.0, 0.0),
            "full": (1.0, 1.0, 1.0, 1.0), "chinstrap": (0.0, 1.0, 0.8, 1.0),
        }[style]
        dens = float(rng.uniform(0.4, 1.0))
        bs = self.beard_set
        i = bs.idx
        region = np.maximum.reduce([areas[0] * self.mustache_area[i], areas[1] * self.chin_area[i],
                                    areas[2] * self.cheek_beard_area[i], areas[3] * self.sideburn_area[i]])
        region = np.clip(region, 0, 1) * (1 - self.lips[i]) * (1 - self.mouth[i])
        if style == "chinstrap":
            region = region * np.clip(1.5 - 1.5 * self.mustache_area[i], 0, 1)
        if style in ("stubble", "shadow"):
            # short hairs: a fine dot pattern plus a bluish-dark shadow
            dots = np.clip((self._bank_sample(rng, self._bank_spots, bs)[:, 2] - 0.3) / 1.2, 0, 1)
            shade = dens * (0.35 if style == "stubble" else 0.18)
            a = region * (shade + dens * (0.5 if style == "stubble" else 0.2) * dots)
            labels["stubble"] = dens
        else:
            strands = bs.canvas()
            n = int(dens * 2600 * (self.eye_width / 32.0) ** 2)
            cand = i[region > 0.3]
            if len(cand):
                v = rng.choice(cand, size=n)
                base = bs.loc(self.texel[v]) + rng.uniform(-0.5, 0.5, (n, 2))
                ang = np.pi / 2 + rng.normal(0, 0.35, n)  # mostly downward
                length = rng.uniform(0.08, 0.25, n) * self.eye_width
                tip = base + length[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
                cv2.polylines(strands, list(_pts(np.stack([base, tip], 1))), False, 1.0, 1, cv2.LINE_AA, _SHIFT)
            hairs = bs.sample(cv2.GaussianBlur(strands, (0, 0), 0.5))
            a = region * np.clip(0.45 * dens + 0.6 * hairs, 0, 1)
        a = np.clip(a, 0, 1)
        A[i] = A[i] * (1 - a[:, None]) + colour * a[:, None]
        beard_part = np.maximum(self.chin_area[i], self.cheek_beard_area[i])
        labels["beard_density"] = float((a * beard_part).sum() / max(beard_part.sum(), 1e-6))
        must = self.mustache_area[i]
        labels["mustache_density"] = float((a * must).sum() / max(must.sum(), 1e-6))
        return labels

    def _makeup(self, A, rng) -> dict:
        """Lipstick, eye shadow, eyeliner (drawn with the eyes) and blush, in place."""
        labels = {}
        lm = self.lm
        if rng.random() < 0.6:
            amount = float(rng.uniform(0.3, 0.95))
            colour = _LIPSTICK[rng.integers(len(_LIPSTICK))] * rng.uniform(0.85, 1.1)
            i = self.lip_set.idx
            w = (self.lips[i] * amount)[:, None]
            A[i] = A[i] * (1 - w) + colour * w
            labels["lipstick"] = amount
        if rng.random() < 0.5:  # eye shadow: between the upper lid and the brow
            amount = float(rng.uniform(0.25, 0.8))
            colour = _SHADOW[rng.integers(len(_SHADOW))]
            ss = self.shadow_set
            c = ss.canvas()
            reach = rng.uniform(0.3, 0.6)
            for eye, brow in ((range(36, 40), range(17, 22)), (range(42, 46), range(22, 27))):
                e = lm[list(eye)]
                upper = e + (lm[list(brow)].mean(0) - e.mean(0)) * reach
                cv2.fillPoly(c, [_pts(ss.loc(np.concatenate([e, upper[::-1]])))], 1.0, cv2.LINE_AA, _SHIFT)
            w = (ss.sample(cv2.GaussianBlur(c, (0, 0), 0.12 * self.eye_width)) * (1 - self.eye[ss.idx]) * amount)[:, None]
            A[ss.idx] = A[ss.idx] * (1 - w) + colour * w
            labels["eye_shadow"] = amount
        if rng.random() < 0.5:
            labels["eyeliner"] = float(rng.uniform(0.4, 1.0))
        if rng.random() < 0.5:
            amount = float(rng.uniform(0.15, 0.45))
            colour = np.array([0.85, 0.35, 0.38], np.float32) * rng.uniform(0.85, 1.1)
            i = self.cheek_set.idx
            w = (self.cheeks[i] * amount)[:, None]
            A[i] = A[i] * (1 - w) + colour * w
            labels["blush"] = amount
        return labels

    def _eyes(self, A, rng, liner: float) -> float:
        """Sclera, iris, pupil, lash line and lid shadow, in place; returns the iris lightness."""
        lm = self.lm
        ew = self.eye_width
        iris = (_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.15)).astype(np.float32)
        sclera = np.array([0.80, 0.76, 0.72], np.float32) * rng.uniform(0.85, 1.05)
        es = self.eye_set
        col = es.canvas(4)
        col[..., :3] = sclera
        gaze = rng.normal(0, 0.06, 2) * ew
        for idx in (range(36, 42), range(42, 48)):
            P = es.loc(lm[list(idx)])
            centre = P.mean(0) + gaze - [0, 0.05 * ew]
            r_iris = 0.215 * ew * rng.uniform(0.95, 1.05)
            cv2.circle(col, _pt(centre), int(r_iris * 16), tuple(float(v) for v in iris * 0.55) + (0.0,), -1,
                       cv2.LINE_AA, _SHIFT)
            cv2.circle(col, _pt(centre), int(r_iris * 0.82 * 16), tuple(float(v) for v in iris) + (0.0,), -1,
                       cv2.LINE_AA, _SHIFT)
            cv2.circle(col, _pt(centre), int(r_iris * rng.uniform(0.35, 0.5) * 16), (0.03, 0.025, 0.025, 0.0), -1,
                       cv2.LINE_AA, _SHIFT)
        # lash lines (channel 3): dark on the upper lid, lighter below; eyeliner thickens them
        lash = np.ascontiguousarray(col[..., 3])
        for idx in (range(36, 42), range(42, 48)):
            P = es.loc(lm[list(idx)])
            cv2.polylines(lash, [_pts(P[[0, 1, 2, 3]])], False, 1.0, max(1, int(round(0.06 * ew * (1 + liner)))),
                          cv2.LINE_AA, _SHIFT)
            cv2.polylines(lash, [_pts(P[[3, 4, 5, 0]])], False, 0.45, 1, cv2.LINE_AA, _SHIFT)
            if liner > 0:  # a small wing at the outer corner
                mid = self.width / 2 - es.offset[0]
                outer = P[0] if abs(P[0, 0] - mid) > abs(P[3, 0] - mid) else P[3]
                wing = outer + [np.sign(outer[0] - P.mean(0)[0]) * 0.2 * ew, -0.08 * ew]
                cv2.line(lash, _pt(outer), _pt(wing), 1.0, max(1, int(0.05 * ew)), cv2.LINE_AA, _SHIFT)
        col[..., 3] = cv2.GaussianBlur(lash, (0, 0), 0.5)
        i = es.idx
        s = es.sample(col)  # [n, 4]
        e = self.eye[i][:, None]
        shade = (1.0 - 0.4 * (1.0 - _smoothstep(self.eye_t[i] / 0.6)))[:, None]
        Ae = A[i] * (1 - e) + s[:, :3] * e * shade
        la = np.clip(s[:, 3:4] * rng.uniform(0.6, 1.0), 0, 1)
        A[i] = Ae * (1 - la) + np.array([0.03, 0.025, 0.025], np.float32) * la
        return float(np.clip((iris @ _LUMA - 0.08) / 0.35, 0, 1))


class _Subset:
    """A subset of a painter's vertices with a local canvas (its bounding box on the texture
    plane, plus a margin) and remap maps, so layers that only touch a region only pay for it.

    Draw in local coordinates: ``loc(points)`` shifts texture-plane points into the local canvas.
    """

    def __init__(self, painter: SkinPainter, idx: np.ndarray, margin: int = 4) -> None:
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


def _pt(p) -> tuple[int, int]:
    return int(round(float(p[0]) * 16)), int(round(float(p[1]) * 16))
