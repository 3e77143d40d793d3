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

from pyfaid.synth.skin_canvas import (
    SHIFT,
    RegionSubset,
    SkinCanvas,
    fixed_point,
    smoothstep,
    texel_polygon,
)

__all__ = ["SkinPainter", "APPEARANCE_LABELS", "HAIR_COLOURS", "MONK_SKIN_TONES", "monk_colour"]

#: Scalar appearance labels :meth:`SkinPainter.paint` returns (all floats; counts for ``moles``).
APPEARANCE_LABELS = (
    "skin_detail", "freckles", "age_spots", "moles", "scar", "tan_lines",
    "eyebrow_darkness", "eyebrow_thickness", "beard_density", "mustache_density", "stubble",
    "lipstick", "eye_shadow", "eyeliner", "blush", "iris_lightness",
)

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

#: The Monk Skin Tone Scale (Ellis Monk with Google, 2022; published under CC BY 4.0): its ten
#: reference colours, lightest (MST-1) to darkest (MST-10), sRGB in [0, 1]. Skin tones are drawn
#: along it (:meth:`SkinPainter.paint`), so the synthetic faces span light to dark skin evenly.
MONK_SKIN_TONES = np.array(
    [
        [246, 237, 228], [243, 231, 219], [247, 234, 208], [234, 218, 186], [215, 189, 150],
        [160, 126, 86], [130, 92, 67], [96, 65, 52], [58, 49, 42], [41, 36, 32],
    ],
    np.float32,
) / 255.0


def monk_colour(position: float) -> np.ndarray:
    """The skin colour at ``position`` in [0, 9] along :data:`MONK_SKIN_TONES` (0 = MST-1, 9 = MST-10),
    linearly between neighbouring swatches; ``[3]`` sRGB."""
    t = float(np.clip(position, 0.0, 9.0))
    k = min(int(t), 8)
    return MONK_SKIN_TONES[k] * (1 - (t - k)) + MONK_SKIN_TONES[k + 1] * (t - k)


class SkinPainter(SkinCanvas):
    """Paints per-vertex albedo layers for one face model.

    Args:
        face_model: a ``MorphableModel`` (its mean shape, 68 landmark indices, mean albedo and
            ``labels["skin_mask"]`` or ``face_mask`` are used).

    The constructor unwraps the mean shape and prepares the fixed region weights (about 0.1 s);
    :meth:`paint` then costs about 2 ms per face at the default model's 34.5k vertices.
    """

    def paint(self, albedo: np.ndarray, rng: np.random.Generator, hair_colour: np.ndarray,
              male: float = 0.5, age: float = 0.5, detail: bool = True,
              tone: float | None = None) -> tuple[np.ndarray, dict]:
        """Add the random layers to one face's basis albedo.

        Args:
            albedo: ``[V, 3]`` basis albedo (``mean_tex + tex_base @ tex``).
            rng: the item's generator.
            hair_colour: ``[3]`` the item's hair colour (brows and beards take it, darker).
            male: in [0, 1], how likely beards (vs make-up) are.
            age: in [0, 1], how likely age spots, grey beards and rough skin are.
            detail: False skips everything (returns the clipped basis albedo and zero labels).
            tone: the skin tone's position on the Monk scale (0 = MST-1 ... 9 = MST-10; see
                :func:`monk_colour`), or None to draw it; the basis albedo is scaled per colour
                channel so its skin takes that colour (its own variation across the face kept).

        Returns:
            ``(albedo [V, 3] float32 in [0, 1], labels)``: the final albedo and a dict of
            :data:`APPEARANCE_LABELS` floats.
        """
        A = np.clip(np.asarray(albedo, np.float32), 0.0, 1.0)
        labels = {k: 0.0 for k in APPEARANCE_LABELS}
        if not detail:
            return A.copy(), labels
        hair_colour = np.asarray(hair_colour, np.float32)
        A = self._skin_tone(A, rng, tone)
        lum_ref = float((A[self._ref_idx] @ _LUMA).mean())
        fair = float(np.clip((lum_ref - 0.25) / 0.35, 0, 1))
        made_up = rng.random() < 0.55 * (1 - male) + 0.03
        A = self._skin_detail(A, rng, labels, lum_ref, fair, age, made_up)
        self._eyebrows(A, rng, labels, hair_colour, lum_ref)
        # --- beards and stubble
        if rng.random() < 0.6 * male ** 1.5:
            labels.update(self._beard(A, rng, hair_colour, age))
        self._mouth_and_eyes(A, rng, labels, made_up)
        np.clip(A, 0.0, 1.0, out=A)
        return A, labels

    # ------------------------------------------------------------------------------ layers
    def _skin_tone(self, A: np.ndarray, rng: np.random.Generator, tone: float | None) -> np.ndarray:
        """The albedo scaled per channel so that the skin's mean is a Monk-scale colour: the swatch
        at ``tone`` (drawn uniformly along the scale when None), a little darker than the swatch
        (the swatches show lit skin; the key light brightens the albedo again) and a little hue
        jitter."""
        position = rng.uniform(0.0, 9.0) if tone is None else float(tone)
        target = monk_colour(position) * rng.uniform(0.7, 0.92) * np.exp(rng.normal(0, 0.03, 3)).astype(np.float32)
        mean = A[self._ref_idx].mean(0)
        gain = np.clip(target / np.maximum(mean, 1e-3), 0.05, 4.0).astype(np.float32)
        return np.clip(A * gain, 0.0, 1.0)

    def _skin_detail(self, A, rng, labels: dict, lum_ref: float, fair: float, age: float, made_up: bool) -> np.ndarray:
        """Skin detail (luminance and redness noise at several scales), spots and marks: the new albedo."""
        skin = self.skin_free
        rough = float(np.clip(rng.beta(2.0, 3.0) * (0.6 + 0.8 * age) * (0.6 if made_up else 1.0), 0, 1))
        labels["skin_detail"] = rough
        wf, wc = (float(v) for v in rng.uniform(0.5, 1.5, 2))
        N = self._bank_sample(rng, self._bank_skin)  # [V, 4]
        spots = self._spots(rng, labels, fair, age)
        extra = self._marks(rng, labels)
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
        return A

    def _spots(self, rng, labels: dict, fair: float, age: float) -> list:
        """Freckles and age spots: ``(vertex indices, darkening)`` pairs."""
        spots = []
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
        return spots

    def _marks(self, rng, labels: dict):
        """Moles (negative), scars and tan lines (positive): a signed luminance canvas, or None."""
        ew = self.eye_width
        n_moles = int(rng.poisson(0.8))
        labels["moles"] = float(n_moles)
        extra = None  # signed luminance: moles (negative), scars and tan lines (positive)
        if n_moles:
            extra = self.canvas()
            for v in rng.choice(self._mole_candidates, size=n_moles):
                cv2.circle(extra, fixed_point(self.texel[v]), int(round(rng.uniform(0.6, 2.2) * 16)),
                           -float(rng.uniform(0.35, 0.65)), -1, cv2.LINE_AA, SHIFT)
        if rng.random() < 0.04:  # a scar: a thin lighter line
            labels["scar"] = 1.0
            extra = self.canvas() if extra is None else extra
            p0 = self.texel[rng.choice(self._mole_candidates)]
            ang, length = rng.uniform(0, np.pi), rng.uniform(8, 35)
            t = np.linspace(-0.5, 0.5, 8)[:, None]
            bend = rng.normal(0, 0.15) * length
            pts = p0 + t * length * [np.cos(ang), np.sin(ang)] + (1 - 4 * t ** 2) * bend * [-np.sin(ang), np.cos(ang)]
            scar = np.zeros_like(extra)
            cv2.polylines(scar, [texel_polygon(pts)], False, rng.uniform(0.12, 0.3), int(rng.integers(1, 3)),
                          cv2.LINE_AA, SHIFT)
            extra += cv2.GaussianBlur(scar, (0, 0), 0.6)
        if rng.random() < 0.04:  # tan lines: lighter skin that a hat or sunglasses shaded
            labels["tan_lines"] = 1.0
            extra = self.canvas() if extra is None else extra
            c = self.canvas()
            if rng.random() < 0.5:
                for a, b in ((36, 39), (42, 45)):
                    cc = (self.lm[a] + self.lm[b]) / 2
                    cv2.ellipse(c, fixed_point(cc), fixed_point((0.85 * ew, 0.55 * ew)), 0, 0, 360, 1.0, -1,
                                cv2.LINE_AA, SHIFT)
                cv2.line(c, fixed_point(self.lm[39]), fixed_point(self.lm[42]), 1.0, max(1, int(0.15 * ew)),
                         cv2.LINE_AA, SHIFT)
            else:
                y = int(self.lm[[19, 24], 1].min() - rng.uniform(0.4, 1.0) * ew)
                cv2.rectangle(c, (0, 0), (self.width, y), 1.0, -1)
            extra += rng.uniform(0.08, 0.2) * cv2.GaussianBlur(c, (0, 0), 1.2)
        return extra

    def _eyebrows(self, A, rng, labels: dict, hair_colour: np.ndarray, lum_ref: float) -> None:
        """Replace the model's painted brows by hair strokes, in place."""
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

    def _mouth_and_eyes(self, A, rng, labels: dict, made_up: bool) -> None:
        """Natural lip colour, make-up, eyes and the mouth interior, in place."""
        ls = self.lip_set
        lip_shift = np.array([rng.normal(0.02, 0.04), rng.normal(-0.02, 0.03), rng.normal(-0.01, 0.03)], np.float32)
        A[ls.idx] += (self.lips[ls.idx] * (1 - 0.5 * self.mouth[ls.idx]))[:, None] * lip_shift
        if made_up:
            labels.update(self._makeup(A, rng))
        labels["iris_lightness"] = self._eyes(A, rng, labels["eyeliner"])
        self._mouth_inside(A, rng)

    def _mouth_inside(self, A, rng) -> None:
        """The inside of the mouth, in place: the lips' wet inner edge, the upper and lower teeth
        (tooth by tooth, ivory to yellowish), the gums above the upper teeth, the tongue behind the
        lower ones, and a dark cavity; darker the deeper it lies (the light does not reach it)."""
        i, m = self.lip_set.idx, self.mouth_weights  # the fixed weights (SkinCanvas._mouth_weights)
        t, x = m["t"], m["x"]
        teeth = np.array([0.80, 0.76, 0.66], np.float32) * rng.uniform(0.72, 1.0) \
            + np.array([0.0, 0.0, -0.08], np.float32) * rng.uniform(0, 1)
        # tooth edges along the arch (incisors, laterals, canines, premolars; model units)
        edges = np.array([0.0, 0.085, 0.15, 0.225, 0.295, 0.36], np.float32) * rng.uniform(0.9, 1.1)
        gap = np.exp(-((np.abs(x[:, None] - edges[None]).min(1) / 0.005) ** 2))
        tooth = np.searchsorted(edges, x)
        shade = (1 - 0.07 * (tooth % 2) - 0.06 * np.clip(tooth - 2, 0, None)) * (1 - 0.55 * gap)
        show = rng.uniform(0.18, 0.32)  # how far the upper teeth reach down, in the opened mouth
        above = 1 - smoothstep((t - show) / 0.05)
        upper_teeth = m["behind_lips"] * above * m["upper_teeth_depth"]
        gums = above * m["gums_front"] * m["gums_back"]
        tongue_colour = np.array([0.68, 0.30, 0.30], np.float32) * rng.uniform(0.75, 1.1)
        cavity = np.array([0.16, 0.045, 0.045], np.float32) * rng.uniform(0.6, 1.2)
        wet = np.array([0.55, 0.22, 0.22], np.float32)
        colour = np.broadcast_to(cavity, (len(i), 3))
        for w, c in ((gums[:, None], np.array([0.72, 0.36, 0.38], np.float32)),
                     (m["tongue"][:, None], tongue_colour * m["groove"]),
                     (np.clip(upper_teeth + m["lower_teeth"], 0, 1)[:, None], teeth * shade[:, None]), (m["wet"], wet)):
            colour = colour * (1 - w) + c * w
        A[i] = A[i] * (1 - m["inside"]) + colour * m["light"] * m["inside"]

    def _skin_reference(self, A: np.ndarray) -> np.ndarray:
        """The face's skin colour above the brows (what erased brows become), ``[3]``."""
        return A[self._forehead_idx].mean(0)

    def _brows(self, rng: np.random.Generator, thick: float, density: float, sub: "RegionSubset") -> np.ndarray:
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
            cv2.fillPoly(soft, [texel_polygon(np.concatenate([top, bot[::-1]]))], 1.0, cv2.LINE_AA, SHIFT)
            n = int(density * (140 + 260 * thick) * (ew / 32.0) ** 2)
            t = rng.uniform(0, 1, n)
            h = head_h * (1.0 - 0.6 * t ** 1.3)
            off = rng.uniform(-0.1, 0.85, n) * h * (0.75 + 0.25 * rng.random(n))
            base = at(t) + np.stack([np.zeros(n), off], 1)
            # up at the inner end, then outward, converging to the brow's middle line
            ang_in = -np.pi / 2 + outward * 0.35
            ang_out = (0.0 if outward > 0 else np.pi) + outward * (-np.sign(off - 0.375 * h) * rng.uniform(0.15, 0.45, n))
            w = smoothstep((t - 0.02) / 0.12)
            ang = ang_in * (1 - w) + ang_out * w + rng.normal(0, 0.12, n)
            length = rng.uniform(0.12, 0.26, n) * ew * (0.45 + 0.55 * w)  # the upright inner hairs are short
            tip = base + length[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
            lines.append(np.stack([base, tip], 1))
        lines = texel_polygon(np.concatenate(lines))  # [n, 2, 2]
        group = rng.integers(0, 3, len(lines))
        c = sub.canvas()
        for g, value in enumerate((0.55, 0.8, 1.0)):
            sel = lines[group == g]
            if len(sel):
                cv2.polylines(c, list(sel), False, value, 1, cv2.LINE_AA, SHIFT)
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
                cv2.polylines(strands, list(texel_polygon(np.stack([base, tip], 1))), False, 1.0, 1, cv2.LINE_AA, SHIFT)
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
                cv2.fillPoly(c, [texel_polygon(ss.loc(np.concatenate([e, upper[::-1]])))], 1.0, cv2.LINE_AA, SHIFT)
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
            cv2.circle(col, fixed_point(centre), int(r_iris * 16), tuple(float(v) for v in iris * 0.55) + (0.0,), -1,
                       cv2.LINE_AA, SHIFT)
            cv2.circle(col, fixed_point(centre), int(r_iris * 0.82 * 16), tuple(float(v) for v in iris) + (0.0,), -1,
                       cv2.LINE_AA, SHIFT)
            cv2.circle(col, fixed_point(centre), int(r_iris * rng.uniform(0.35, 0.5) * 16), (0.03, 0.025, 0.025, 0.0), -1,
                       cv2.LINE_AA, SHIFT)
        # lash lines (channel 3): dark on the upper lid, lighter below; eyeliner thickens them
        lash = np.ascontiguousarray(col[..., 3])
        for idx in (range(36, 42), range(42, 48)):
            P = es.loc(lm[list(idx)])
            cv2.polylines(lash, [texel_polygon(P[[0, 1, 2, 3]])], False, 1.0, max(1, int(round(0.06 * ew * (1 + liner)))),
                          cv2.LINE_AA, SHIFT)
            cv2.polylines(lash, [texel_polygon(P[[3, 4, 5, 0]])], False, 0.45, 1, cv2.LINE_AA, SHIFT)
            if liner > 0:  # a small wing at the outer corner
                mid = self.width / 2 - es.offset[0]
                outer = P[0] if abs(P[0, 0] - mid) > abs(P[3, 0] - mid) else P[3]
                wing = outer + [np.sign(outer[0] - P.mean(0)[0]) * 0.2 * ew, -0.08 * ew]
                cv2.line(lash, fixed_point(outer), fixed_point(wing), 1.0, max(1, int(0.05 * ew)), cv2.LINE_AA, SHIFT)
        col[..., 3] = cv2.GaussianBlur(lash, (0, 0), 0.5)
        i = es.idx
        s = es.sample(col)  # [n, 4]
        e = self.eye[i][:, None]
        shade = (1.0 - 0.4 * (1.0 - smoothstep(self.eye_t[i] / 0.6)))[:, None]
        Ae = A[i] * (1 - e) + s[:, :3] * e * shade
        la = np.clip(s[:, 3:4] * rng.uniform(0.6, 1.0), 0, 1)
        A[i] = Ae * (1 - la) + np.array([0.03, 0.025, 0.025], np.float32) * la
        return float(np.clip((iris @ _LUMA - 0.08) / 0.35, 0, 1))
