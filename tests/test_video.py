"""Video: the One-Euro filter, the crop <-> clip camera poses, tracking through a synthetic clip with
known pose and expression, the exports (Live Link Face CSV, animated glb, overlay video), reading
files, losing and finding the face again, the errors and the command line."""

import os
from types import SimpleNamespace

import numpy as np
import pytest

import pyfaid
from pyfaid import reconstruct as R
from pyfaid.facemodel.blendshapes import ARKIT_NAMES
from pyfaid.reconstruct.expression import Pinhole
from pyfaid.reconstruct.filters import OneEuro, OneEuroFilter, similarity_speed
from pyfaid.reconstruct.predict import crop_renderer
from pyfaid.reconstruct.video import clip_pose, crop_pose
from pyfaid.reconstruct.video_result import LIVE_LINK_FACE_COLUMNS
from pyfaid.reconstruct.video_track import write_video
from pyfaid.synth.clips import photo_clip, synthetic_clip

SIZE = (320, 240)
SCRIPT = ((3, "still"), (6, "jawOpen@0.8"), (3, "still"))


@pytest.fixture(scope="module")
def clip():
    return synthetic_clip(size=SIZE, face_width=110, script=SCRIPT)


@pytest.fixture(scope="module")
def vrec(clip):
    return pyfaid.reconstruct_video(clip.frames, fps=clip.fps, progress=False)


# ----------------------------------------------------------------------------- filter
def test_one_euro_filter():
    g = np.random.default_rng(0)
    f = OneEuroFilter(OneEuro(min_cutoff=1.0, beta=0.0))
    noisy = 5.0 + g.normal(0, 1, (300, 4))
    out = np.stack([f(x, i / 30) for i, x in enumerate(noisy)])
    np.testing.assert_array_equal(out[0], noisy[0])  # the first sample passes
    assert out[50:].std() < 0.5 * noisy[50:].std()
    ramp = np.arange(60.0)[:, None] * np.ones(2)  # a signal moving at 30 units/s
    lag = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter(OneEuro(1.0, beta))
        lag[beta] = np.abs(np.stack([f(x, i / 30) for i, x in enumerate(ramp)])[-1] - ramp[-1]).max()
    assert lag[1.0] < 0.2 * lag[0.0]  # speed opens the cutoff
    f.reset()
    np.testing.assert_array_equal(f(np.zeros(2), 10.0), np.zeros(2))
    with pytest.raises(ValueError, match="times must increase"):
        f(np.zeros(2), 9.0)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros(3), 11.0)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuro(min_cutoff=0)
    with pytest.raises(ValueError, match="beta"):
        OneEuro(beta=-1)


def test_similarity_speed_sees_shift_turn_and_zoom_not_noise():
    g = np.random.default_rng(1)
    pts = g.normal(0, 30, (68, 2))
    assert similarity_speed(np.tile([3.0, 4.0], (68, 1)), pts) == pytest.approx(5.0)
    turn = 0.1 * np.stack([-pts[:, 1], pts[:, 0]], 1)  # 0.1 rad per unit of time
    rms = float(np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean()))
    assert similarity_speed(turn - turn.mean(0), pts) == pytest.approx(0.1 * rms, rel=1e-6)
    noise = g.normal(0, 1, (68, 2))
    assert similarity_speed(noise, pts) < 0.35 * np.sqrt((noise ** 2).sum(1).mean())  # noise mostly averages out


# ----------------------------------------------------------------------------- cameras
def test_clip_and_crop_poses_are_inverse_and_keep_the_pixel():
    crop_cam = Pinhole.of_renderer(crop_renderer("cpu"))
    clip_cam = Pinhole(2200.0, 319.5, 239.5, 10.0)
    ang, sc = 0.3, 0.45  # a crop turned and scaled
    m = np.array([[sc * np.cos(ang), -sc * np.sin(ang), -20.0], [sc * np.sin(ang), sc * np.cos(ang), 35.0]])
    angle, trans = np.array([0.1, -0.2, 0.05]), np.array([0.05, -0.1, 0.3])
    a2, t2 = clip_pose(m, angle, trans, crop_cam, clip_cam)
    a3, t3 = crop_pose(m, a2, t2, crop_cam, clip_cam)
    np.testing.assert_allclose(a3, angle, atol=1e-12)
    np.testing.assert_allclose(t3, trans, atol=1e-12)
    # the head's origin lands on the same photo pixel in both cameras
    in_crop = crop_cam.project(trans[None])[0]
    a = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(in_crop @ a[:, :2].T + a[:, 2], clip_cam.project(t2[None])[0], atol=1e-9)
    assert a2[2] == pytest.approx(angle[2] - np.arctan2(a[1, 0], a[0, 0]))


# ----------------------------------------------------------------------------- tracking a clip
def test_clip_is_tracked_with_its_pose_and_expression(clip, vrec):
    n = len(clip.frames)
    assert len(vrec) == n and vrec.tracked.all() and vrec.detected.sum() == 1 and vrec.detected[0]
    err = np.linalg.norm(vrec.landmarks - clip.landmarks, axis=2).mean()
    assert err < 0.04 * SIZE[0], err  # a few pixels
    assert np.degrees(np.abs(vrec.angles - clip.angles)).mean() < 6.0
    w = vrec.weights
    assert w.shape == (n, 52) and w.min() >= 0 and w.max() <= 1
    assert np.abs(w - clip.blendshapes).mean() < 0.08
    assert set(vrec.pose(0)) == {"yaw", "pitch", "roll"} and list(vrec.blendshapes(0)) == list(ARKIT_NAMES)
    rec = vrec.frame(5, clip.frames[5])  # one frame as a Reconstruction: its landmarks are the video's
    np.testing.assert_allclose(rec.landmarks, vrec.landmarks[5], atol=1e-3)
    assert rec.render().mask.sum() > 500


def test_video_exports(clip, vrec, tmp_path):
    import cv2
    import pygltflib
    import trimesh

    files = vrec.save(tmp_path, "clip", clip.frames)
    assert sorted(os.path.basename(f) for f in files) == ["clip.csv", "clip.glb", "clip.npz", "clip_overlay.mp4"]
    lines = (tmp_path / "clip.csv").read_text().splitlines()
    assert lines[0].split(",") == list(LIVE_LINK_FACE_COLUMNS) and len(lines) == len(clip.frames) + 1
    first = lines[1].split(",")
    assert first[0] == "00:00:00:00.000" and first[1] == "61" and len(first) == len(LIVE_LINK_FACE_COLUMNS)
    jaw = [float(line.split(",")[LIVE_LINK_FACE_COLUMNS.index("JawOpen")]) for line in lines[1:]]
    np.testing.assert_allclose(jaw, vrec.weights[:, ARKIT_NAMES.index("jawOpen")], atol=1e-6)
    yaw = [float(line.split(",")[LIVE_LINK_FACE_COLUMNS.index("HeadYaw")]) for line in lines[1:]]
    np.testing.assert_allclose(yaw, vrec.angles[:, 1], atol=1e-6)  # radians
    scene = trimesh.load(str(tmp_path / "clip.glb"))
    assert [len(m.metadata["targetNames"]) for m in scene.geometry.values()] == [52]
    g = pygltflib.GLTF2().load(str(tmp_path / "clip.glb"))
    (anim,) = g.animations
    assert sorted(c.target.path for c in anim.channels) == ["rotation", "translation", "weights"]
    times = g.accessors[anim.samplers[0].input]
    assert times.count == len(clip.frames) and times.max[0] == pytest.approx((len(clip.frames) - 1) / clip.fps)
    assert len(g.cameras) == 1 and g.cameras[0].perspective.aspectRatio == pytest.approx(SIZE[0] / SIZE[1])
    cap = cv2.VideoCapture(str(tmp_path / "clip_overlay.mp4"))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == len(clip.frames)
    z = np.load(tmp_path / "clip.npz")
    assert z["weights"].shape == (len(clip.frames), 52) and z["tracked"].all()
    assert z["landmarks_photo_px"].shape == (len(clip.frames), 68, 2)


def test_file_input_loss_and_recovery(clip, tmp_path):
    blank = [np.full_like(clip.frames[0], 90)] * 3
    frames = clip.frames[:4] + blank + clip.frames[4:8]
    path = write_video(frames, tmp_path / "gap.avi", clip.fps)
    v = pyfaid.reconstruct_video(path, progress=False)
    assert v.fps == pytest.approx(clip.fps) and v.size == SIZE
    np.testing.assert_array_equal(v.tracked, [True] * 4 + [False] * 3 + [True] * 4)
    assert v.detected.sum() == 2 and v.detected[7]  # found again after the gap
    assert np.isnan(v.weights[5]).all() and v.blendshapes(5) == {}
    rows = (v.save_csv(tmp_path / "gap.csv") and (tmp_path / "gap.csv").read_text().splitlines())
    assert [r.split(",")[1] for r in rows[5:8]] == ["0", "0", "0"]  # no face: the importers skip them
    assert pyfaid.reconstruct_video(path, max_frames=2, progress=False).tracked.shape == (2,)


def test_video_errors_name_the_input(tmp_path):
    with pytest.raises(R.VideoReadError, match="nothere.mp4: no such file"):
        pyfaid.reconstruct_video(str(tmp_path / "nothere.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(R.VideoReadError, match="text.mp4"):
        pyfaid.reconstruct_video(str(tmp_path / "text.mp4"))
    grey = [np.full((120, 160, 3), 128, np.uint8)] * 3
    with pytest.raises(R.FaceNotFoundError, match="no face detected in any of its 3 frames"):
        pyfaid.reconstruct_video(grey, progress=False)
    with pytest.raises(R.VideoReadError, match="one size"):
        pyfaid.reconstruct_video([grey[0], np.zeros((100, 100, 3), np.uint8)])
    with pytest.raises(ValueError, match="fit_steps"):
        pyfaid.reconstruct_video(grey, fit_steps=-1)


def test_filtering_steadies_a_still_noisy_face():
    from skimage import data

    clip = photo_clip(data.astronaut(), still=20, moving=0)  # the benchmark's framing: 640 x 480, face 200 px
    v = pyfaid.reconstruct_video(clip.frames, progress=False)
    raw = pyfaid.reconstruct_video(clip.frames, progress=False, filter=None)
    assert v.tracked.all() and raw.tracked.all() and raw.filter is None
    np.testing.assert_allclose(raw.landmarks, raw.landmarks_raw)
    step = lambda lm: float(np.sqrt((np.diff(lm, axis=0) ** 2).sum(-1).mean()))  # noqa: E731
    assert step(v.landmarks) < 0.5 * step(raw.landmarks)


def test_fitting_per_frame_keeps_weights_in_range(clip):
    v = pyfaid.reconstruct_video(clip.frames[:4], fit_steps=2, progress=False)
    assert v.tracked.all() and v.weights.min() >= 0 and v.weights.max() <= 1 and v.fit_steps == 2


def test_video_command_line(clip, tmp_path, capsys):
    path = write_video(clip.frames[:5], tmp_path / "talk.avi", clip.fps)
    out = tmp_path / "out"
    assert R.main([path, "--out", str(out), "--filter-beta", "5"]) == 0
    assert sorted(os.listdir(out)) == ["talk.csv", "talk.glb", "talk.npz", "talk_overlay.mp4"]
    assert "a face in 5 frames" in capsys.readouterr().out
    assert R.main([str(tmp_path / "none.mp4"), "--out", str(out)]) == 1
    assert "none.mp4: no such file" in capsys.readouterr().err


def test_tracker_keeps_a_track_through_one_low_score_and_drops_it_below_the_floor(monkeypatch):
    """A refined score below MTCNN's threshold for one frame (noise on a still, dark face) keeps
    the track; a second low frame in a row, or a score below KEEP_FLOOR, goes back to detection."""
    import pyfaid.reconstruct.video_track as vt

    scores = iter([0.95, 0.5, 0.95, 0.5, 0.5, 0.95, 0.1])
    detections = []
    box = np.array([100.0, 100.0, 200.0, 200.0])
    pts = np.tile([150.0, 150.0], (5, 1))
    monkeypatch.setattr(vt, "refine_face", lambda frame, guess, device: {"score": next(scores), "box": box,
                                                                         "landmarks5": pts})
    monkeypatch.setattr(vt, "crop_face", lambda *a, **k: SimpleNamespace(photo_to_crop=np.eye(3)[:2], image=None))
    tracker = object.__new__(vt.FaceTracker)
    tracker.threshold, tracker.device, tracker.name = 0.7, "cpu", "frames"
    tracker.box, tracker.before, tracker.low = None, None, 0
    monkeypatch.setattr(tracker, "_predict", lambda crop: (None, None, None))

    def detect(frame):
        detections.append(len(detections))
        return vt.Detection(box, pts, 0.99)

    monkeypatch.setattr(tracker, "_detect", detect)
    frame = np.zeros((300, 300, 3), np.uint8)
    got = [tracker.step(frame, i).detected for i in range(8)]
    # frame 0 detects; then 0.95 follow, 0.5 kept (grace), 0.95, 0.5 kept, 0.5 again -> detect,
    # 0.95 follow, 0.1 (below the floor) -> detect
    assert got == [True, False, False, False, False, True, False, True]
    assert vt.GRACE_FRAMES == 1 and 0 < vt.KEEP_FLOOR < 0.7
