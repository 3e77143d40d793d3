"""pyfaid.encoders.detect_retry: detection that tries again (padded, upscaled, lower thresholds)
before giving up, and pyfaid.reconstruct using it; the detection protocol's occluder pasting."""

import numpy as np
import pytest

from pyfaid.encoders import detect_retry as D


def _astronaut():
    from skimage import data

    return data.astronaut()


def test_retry_order_and_coordinates(monkeypatch):
    """The attempts run in order until one yields a selected face; the found points come back in
    the photo's pixels whatever the attempt's padding and scaling."""
    calls = []
    truth = np.array([[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [42.0, 70.0], [58.0, 70.0]])

    low = next(a for a in D.RETRIES if a.thresholds is not None)  # the first attempt that finds it

    def fake_detect(img, device, min_prob, max_side, thresholds):
        calls.append((img.shape[:2], min_prob, thresholds))
        if thresholds is None:
            return []
        pts = truth * low.scale + int(round(low.pad * 100 * low.scale))  # scaled, then padded
        return [{"box": np.concatenate([pts.min(0), pts.max(0)]), "score": 0.8, "landmarks5": pts}]

    monkeypatch.setattr(D, "detect_faces", fake_detect)
    img = np.zeros((100, 100, 3), np.uint8)
    chosen, found = D.detect_with_retries(img)
    names = [a.name for a in (D.PLAIN,) + D.RETRIES]
    first_low = next(i for i, a in enumerate((D.PLAIN,) + D.RETRIES) if a.thresholds is not None)
    assert len(calls) == first_low + 1  # stopped at the first attempt that found it
    assert chosen and chosen[0]["attempt"] == names[first_low]
    np.testing.assert_allclose(chosen[0]["landmarks5"], truth, atol=1e-9)
    # a selection that rejects everything moves on through every attempt and returns what was found
    calls.clear()
    chosen, found = D.detect_with_retries(img, select=lambda f: [])
    assert chosen == [] and found and len(calls) == len(names)


def test_retries_find_a_small_face_and_a_face_at_the_border():
    import cv2

    img = _astronaut()
    full = D.detect_attempt(img, D.PLAIN)
    assert full
    small = cv2.resize(img, None, fx=0.11, fy=0.11, interpolation=cv2.INTER_AREA)  # a ~20 px face
    assert D.detect_attempt(small, D.PLAIN) == []
    chosen, _ = D.detect_with_retries(small)
    assert chosen and chosen[0]["attempt"] != D.PLAIN.name
    np.testing.assert_allclose(chosen[0]["landmarks5"], full[0]["landmarks5"] * 0.11, atol=3.0)
    cut = np.ascontiguousarray(img[:, 230:])  # the face cut by the photo's left border
    assert D.detect_attempt(cut, D.PLAIN) == []
    chosen, _ = D.detect_with_retries(cut)
    assert chosen and chosen[0]["attempt"] != D.PLAIN.name
    d = np.linalg.norm(chosen[0]["landmarks5"][2] - (full[0]["landmarks5"][2] - [230, 0]))
    assert d < 15  # the nose where the full photo has it (a face cut in half: MTCNN's points move)
    assert D.detect_with_retries(np.full((200, 200, 3), 128, np.uint8)) == ([], [])


def test_reconstruct_uses_the_retries():
    """A photo whose small face the plain detection misses is reconstructed; a blank one still raises
    FaceNotFoundError naming it and what was tried."""
    import cv2

    import pyfaid
    from pyfaid.reconstruct import FaceNotFoundError

    small = cv2.resize(_astronaut(), None, fx=0.11, fy=0.11, interpolation=cv2.INTER_AREA)
    rec = pyfaid.reconstruct(small, checkpoint=None, fit_steps=1)
    assert rec.landmarks.shape == (68, 2) and (rec.landmarks.max(0) < 56 + 10).all()
    with pytest.raises(FaceNotFoundError, match="upscaled"):
        pyfaid.reconstruct(np.full((200, 200, 3), 128, np.uint8), checkpoint=None, fit_steps=1)


def test_occlude_photo_pastes_on_the_annotated_face():
    from pyfaid.evaluate.detection import occlude_photo

    img = _astronaut()
    det = D.detect_attempt(img, D.PLAIN)[0]
    # 68 points roughly placed from the 5 detected ones (eyes, nose, mouth, a jaw around them)
    five = det["landmarks5"]
    pts = np.zeros((68, 2))
    pts[36:42], pts[42:48], pts[27:36] = five[0], five[1], five[2]
    pts[48:60], pts[60:68] = five[3:].mean(0), five[3:].mean(0)
    pts[48], pts[54] = five[3], five[4]
    t = np.linspace(-1.2, 1.2, 17)
    c, w = five[2], np.linalg.norm(five[1] - five[0])
    pts[:17] = np.stack([c[0] + 1.1 * w * np.sin(t), c[1] + 1.2 * w * np.cos(t) - 0.2 * w], 1)
    brow_x = np.linspace(five[0][0] - 0.3 * w, five[1][0] + 0.3 * w, 10)
    pts[17:27] = np.stack([brow_x, np.full(10, five[0][1] - 0.3 * w)], 1)
    assert occlude_photo(img, pts, "none", 0, 0) is img
    out = occlude_photo(img, pts, "mask", 1234, 0)
    diff = np.abs(out.astype(int) - img.astype(int)).max(-1) > 10
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 1000
    x0, y0, x1, y1 = det["box"]
    assert x0 - 20 < np.median(xs) < x1 + 20 and y0 < np.median(ys) < y1 + 20  # on the face
    assert not diff[:, :50].any() and not diff[-50:].any()  # nowhere else


def test_detect_without_retries_runs_the_plain_detection_once(monkeypatch):
    """``detect(..., retries=False)`` (the video tracker's) tries only the plain detection and says
    so when it finds nothing; with retries every attempt runs before the error names them."""
    from pyfaid.reconstruct import detect as R

    calls = []
    monkeypatch.setattr(D, "detect_faces", lambda img, device, min_prob, max_side, thresholds: calls.append(1) or [])
    blank = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(R.FaceNotFoundError, match=r"blank: no face detected$"):
        R.detect(blank, "blank", retries=False)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(R.FaceNotFoundError, match="upscaled"):
        R.detect(blank, "blank")
    assert len(calls) == 1 + len(D.RETRIES)
