"""A turntable of a textured reconstruction: the head turning from side to side, rendered by pyfaid.

Each frame is the reconstruction's textured render (:meth:`Reconstruction.render` with ``texture=``:
:meth:`pyfaid.render.Renderer.shade_texture`, a trilinear lookup of the texture's mip pyramid
under the estimated light, outline antialiased), the pyramid built once for all frames. Frames go
to an animated GIF (Pillow) or a PNG grid, chosen by the file extension.
"""

from __future__ import annotations

import io
import math
import os
from typing import Optional

import numpy as np
import torch
from PIL import Image

from pyfaid.fileio import write_atomic
from pyfaid.reconstruct.export import bake_texture
from pyfaid.render import bake
from pyfaid.render.mesh import UVTexture

__all__ = ["render_textured", "turntable_angles", "turntable", "save_frames"]


@torch.no_grad()
def render_textured(rec, texture, angles=None, image_size: int = 256, lit: bool = True,
                    background: float = 1.0, antialias: bool = True) -> dict:
    """Render the reconstruction texture-mapped over a plain background.

    Args:
        rec: a Reconstruction.
        texture: ``[H, W, 3]`` texture in the face model's UV layout (float in [0, 1] or uint8), or
            its :class:`~pyfaid.render.UVTexture` (``rec.face_model.uv_texture(texture)``, made
            once for many frames).
        angles: ``[3]`` rotation angles (pitch, yaw, roll in radians) replacing the estimated pose,
            or None for the estimated one.
        image_size: side of the square image (the crop's framing at that size).
        lit: multiply by the estimated lighting (else the bare texture, the albedo).
        background: grey level of the empty pixels.
        antialias: blend the outline into the background (:func:`pyfaid.render.antialias`).

    Returns:
        dict with ``image [3, S, S]`` RGB in [0, 1] (row 0 at the top) and ``mask [1, S, S]``
        (the coverage, fractional along the outline when antialiased).
    """
    out = rec.render(pose=angles, texture=texture, antialias=antialias, image_size=int(image_size), lit=lit)
    image = out.image[0] + (1.0 - out.mask[0]) * background  # the antialiased outline over the background
    return {"image": image.clamp(0.0, 1.0), "mask": out.mask[0]}


def turntable_angles(rec, n: int, max_yaw: float = math.radians(60)) -> torch.Tensor:
    """``[n, 3]`` poses of one loop: yaw swinging ``max_yaw * sin(2 pi k / n)``, no pitch or roll."""
    if int(n) < 1:
        raise ValueError(f"the turntable needs at least one frame, got n={n}")
    k = torch.arange(int(n), dtype=torch.float32)
    yaw = max_yaw * torch.sin(2 * math.pi * k / int(n))
    return torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], dim=1)


def save_frames(frames, path: str, fps: float = 12.0, columns: int = 6) -> str:
    """Write frames (``[H, W, 3]`` uint8 RGB each) as an animated ``.gif`` or a ``.png`` grid.

    Raises:
        ValueError: another extension. FileNotFoundError: the folder does not exist.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".gif", ".png"):
        raise ValueError(f"{path}: a turntable is written as .gif (animation) or .png (grid), not {ext or 'no extension'!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: the folder {folder} does not exist")
    buf = io.BytesIO()
    if ext == ".gif":
        ims = [Image.fromarray(f) for f in frames]
        ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=int(round(1000 / fps)),
                    loop=0, disposal=1)
    else:
        cols = min(int(columns), len(frames))
        rows = -(-len(frames) // cols)
        h, w = frames[0].shape[:2]
        grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
        for i, f in enumerate(frames):
            grid[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = f
        Image.fromarray(grid).save(buf, format="PNG")
    write_atomic(path, buf.getvalue())
    return path


def turntable(rec, n: int = 36, path: Optional[str] = None, texture=None, image_size: int = 256,
              max_yaw: float = math.radians(60), lit: bool = True, photo=None, fps: float = 12.0):
    """Frames of the textured head turning from side to side (one loop), optionally written to a file.

    Args:
        rec: a Reconstruction.
        n: number of frames.
        path: optional ``.gif`` (animation) or ``.png`` (grid of the frames) to write.
        texture: ``[H, W, 3]`` texture; None bakes a 1024 x 1024 photo texture
            (:func:`pyfaid.reconstruct.export.bake_texture`, from ``photo`` if given).
        image_size: frame side in pixels.
        max_yaw: largest yaw (radians) of the swing.
        lit: render under the estimated lighting (else the bare albedo texture).
        photo: the original photo, for the baked texture.
        fps: frame rate of the GIF.

    Returns:
        list of ``n`` frames, ``[S, S, 3]`` uint8 RGB.
    """
    if texture is None:
        texture = bake_texture(rec, "photo", 1024, photo=photo)
    if not isinstance(texture, UVTexture):
        tex = torch.as_tensor(texture)
        tex = tex.float() / 255.0 if tex.dtype == torch.uint8 else tex.float()
        texture = rec.face_model.uv_texture(tex.to(rec.coeffs.device))  # mip pyramid built once
    frames = [bake.to_uint8(render_textured(rec, texture, angles=a, image_size=image_size, lit=lit)["image"].permute(1, 2, 0))
              for a in turntable_angles(rec, n, max_yaw)]
    if path is not None:
        save_frames(frames, path, fps=fps)
    return frames
