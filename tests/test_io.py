"""What a new user meets at the door: image arrays in the wrong range, truncated JPEG files, error
messages that name the input once, and the overlay of every face with ``--faces all``."""

import os
import warnings

import cv2
import numpy as np
import pytest

import pyfaid
from pyfaid import reconstruct as R
from pyfaid.reconstruct.io import ImageDecodeWarning, load_image, to_rgb_uint8


def _astronaut():
    from skimage import data

    return data.astronaut()


def test_float_arrays_must_be_in_unit_range():
    img = _astronaut().astype(np.float32)  # 0-255 as floats: every pixel would read as white
    with pytest.raises(R.ImageReadError, match=r"array: a float image must hold values in \[0, 1\].*255.*uint8"):
        to_rgb_uint8(img)
    np.testing.assert_array_equal(to_rgb_uint8(img / 255.0), _astronaut())
    np.testing.assert_array_equal(to_rgb_uint8(_astronaut().astype(np.int64)), _astronaut())  # integers in 0-255
    with pytest.raises(R.ImageReadError, match="0-255"):
        to_rgb_uint8(np.full((64, 64, 3), 300, np.int32))
    with pytest.raises(R.ImageReadError, match=r"array\[0\].*\[0, 1\]"):
        pyfaid.reconstruct([img], fit_steps=0, errors="raise")


def test_truncated_jpeg_warns_once_naming_the_file(tmp_path, capfd):
    path = tmp_path / "cut.jpg"
    ok, data = cv2.imencode(".jpg", _astronaut()[:, :, ::-1])
    assert ok
    path.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.warns(ImageDecodeWarning, match=r"cut\.jpg: the image decoder reported: .*JPEG") as caught:
        img = load_image(path)
    assert img.shape == (512, 512, 3) and len(caught) == 1
    assert "JPEG" not in capfd.readouterr().err  # libjpeg's own line does not reach the terminal
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact file: no warning
        path.write_bytes(data.tobytes())
        load_image(path)


def test_errors_name_the_input_once(tmp_path, capsys):
    missing = str(tmp_path / "nothere.jpg")
    (res,) = pyfaid.reconstruct([missing], fit_steps=0)
    assert str(res).count("nothere.jpg") == 1 and "no such file" in str(res)
    code = R.main([missing, "--out", str(tmp_path / "out"), "--fit", "0"])
    err = capsys.readouterr().err
    assert code == 1
    for line in err.splitlines():
        assert line.count("nothere.jpg") <= 1, line


def test_cli_truncated_jpeg_one_warning(tmp_path, capfd):
    ok, data = cv2.imencode(".jpg", _astronaut()[:, :, ::-1])
    path = tmp_path / "cut.jpg"
    path.write_bytes(data.tobytes()[: int(len(data) * 0.8)])
    code = R.main([str(path), "--out", str(tmp_path / "out"), "--fit", "0", "--export", "npz"])
    err = capfd.readouterr().err
    assert code == 0
    assert err.count("warning: ") == 1 and "cut.jpg: the image decoder reported" in err
    assert "Premature end of JPEG file\n" not in err.replace("reported: Premature end of JPEG file", "")


def test_faces_all_overlay_draws_every_face(tmp_path):
    a = _astronaut()
    photo = np.concatenate([a, a[:, ::-1]], axis=1)  # two faces, side by side
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert R.main([str(path), "--out", str(out), "--fit", "0", "--faces", "all", "--export", "npz"]) == 0
    names = sorted(os.listdir(out))
    assert "two_overlay.jpg" in names and "two_face1_overlay.jpg" in names
    both = cv2.imread(str(out / "two_overlay.jpg")).astype(int)
    first = cv2.imread(str(out / "two_face1_overlay.jpg")).astype(int)
    orig = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR).astype(int)
    changed = lambda img, half: np.abs(img - orig)[:, half * 512:(half + 1) * 512].mean()  # noqa: E731
    assert changed(both, 0) > 3 and changed(both, 1) > 3  # a render drawn over each face
    # the per-face overlay of the second face matches it on that face's half only
    d = [np.abs(both - first)[:, h * 512:(h + 1) * 512].mean() for h in (0, 1)]
    assert max(d) > 0.5 and min(d) < 0.2, d
