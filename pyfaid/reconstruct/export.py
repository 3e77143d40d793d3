"""Textured exports of a :class:`~pyfaid.reconstruct.Reconstruction`: baked textures, OBJ + MTL + PNG,
binary glTF (``.glb``, with the ARKit blendshapes as named morph targets), PLY and OBJ with vertex
colours, ``.npz``, ``.json`` (blendshape weights, pose, landmarks).

Textures (:func:`bake_texture`) are baked in the face model's UV layout
(:meth:`pyfaid.facemodel.MorphableModel.uv_layout`: the model's own, or a generated one) with
:mod:`pyfaid.render.bake`:

* ``"albedo"``: the reconstruction's per-vertex albedo;
* ``"photo"``: the photo's pixels on the surface the photo shows, divided by the estimated shading
  (so the texture is albedo too), blended into the per-vertex albedo where the photo does not show
  the face (turned away, hidden behind the nose, outside the photo, or masked by ``visibility``).
  With the original photo (``photo=``) the texture is sampled from it at its own resolution
  (up to the texture size), else from the 224 x 224 crop the model saw.

Meshes (:func:`textured_mesh`): the model-space mesh (x right, y up, z toward the viewer) with one
vertex per (vertex, UV) pair (:func:`pyfaid.facemodel.uv.split_seams`: vertex ``i < V`` is model
vertex ``i``, seam copies follow), the model's smooth vertex normals (so seams do not show in
shading) and the texture as the material's base colour. OBJ and PLY keep the model's units
(decimetres); glTF positions are in metres, the unit the glTF specification prescribes (what AR
viewers show at true size).

Blendshapes: with a face model built from the 52 ARKit units (the default model), the ``.glb``
holds them as named morph targets (:mod:`pyfaid.reconstruct.gltf`) over the face without
expression (identity only), with the weights of :attr:`Reconstruction.blendshapes` set: viewers
show the fitted expression, and Blender and three.js show one slider per ARKit name. What the
bounded weights cannot express of the reconstructed expression is not in the file.

Every file is written through a temporary file and renamed, so an error never leaves a
half-written file or destroys an existing one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

import cv2
import numpy as np
import torch
import trimesh
from PIL import Image
from trimesh.exchange.obj import export_obj
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from pyfaid.facemodel.blendshapes import Blendshapes, has_blendshapes
from pyfaid.facemodel.uv import split_seams
from pyfaid.fileio import atomic_path, write_atomic
from pyfaid.reconstruct import gltf
from pyfaid.reconstruct.io import load_image, to_rgb_uint8
from pyfaid.render import bake, sh_shading, vertex_normals
from pyfaid.render import camera as cam

__all__ = ["FORMATS", "TEXTURES", "bake_texture", "posed_geometry", "textured_mesh", "save", "face_json",
           "blendshape_glb"]

#: File formats :func:`save` writes, by extension.
FORMATS = (".obj", ".glb", ".ply", ".npz", ".json")
#: Texture kinds :func:`bake_texture` makes.
TEXTURES = ("photo", "albedo")
#: glTF is in metres; the face models are in decimetres.
GLTF_SCALE = 0.1


# ---------------------------------------------------------------------------- geometry
@torch.no_grad()
def posed_geometry(rec, angles: Optional[torch.Tensor] = None, camera=None) -> dict:
    """The reconstruction posed in its crop's camera.

    Args:
        rec: a Reconstruction.
        angles: optional ``[3]`` rotation angles (radians) replacing the estimated ones.
        camera: optional :class:`~pyfaid.render.Camera` (default: the reconstruction's renderer's).

    Returns:
        dict with ``world [V, 3]`` posed vertices, ``normals [V, 3]`` their unit normals,
        ``shading [V, 3]`` the estimated SH lighting factor (the render is ``albedo * shading``),
        ``clip [V, 4]`` clip-space positions and ``eye [3]`` the camera centre (world space).
    """
    fm, renderer = rec.face_model, rec.renderer
    camera = renderer.camera if camera is None else camera
    p = rec.parts()
    verts = rec.vertices.detach().float()[None]
    a = (p["angle"] if angles is None else torch.as_tensor(angles, dtype=torch.float32)).to(verts).reshape(1, 3)
    world = cam.apply_pose(verts, cam.euler_rotation(a), p["trans"].to(verts)[None])
    normals = vertex_normals(world.contiguous(), fm.topology)
    gamma = renderer.lit_gamma(p["gamma"].to(verts)[None])
    shading = sh_shading(normals, torch.ones_like(normals), gamma)
    return {"world": world[0], "normals": normals[0], "shading": shading[0], "clip": camera.clip(world)[0],
            "eye": torch.tensor([0.0, 0.0, camera.distance], device=verts.device)}


# ---------------------------------------------------------------------------- textures
def _as_rgb(photo) -> np.ndarray:
    if isinstance(photo, (str, bytes)) or hasattr(photo, "__fspath__"):
        return load_image(photo)
    return to_rgb_uint8(photo, "photo")


def _photo_crop(rec, photo, visibility, size: int):
    """The photo warped into the crop's framing at up to ``size`` pixels (its own resolution), with
    a mask of the pixels that lie inside the photo (times ``visibility``, given over the photo, and
    times the segmenter's crop visibility ``rec.visibility`` when there is one)."""
    img = _as_rgb(photo)
    if rec.photo_size is not None and tuple(img.shape[:2]) != tuple(rec.photo_size):
        raise ValueError(f"photo is {img.shape[1]} x {img.shape[0]} pixels but the reconstruction came from a "
                         f"{rec.photo_size[1]} x {rec.photo_size[0]} photo")
    m = np.vstack([np.asarray(rec.transform, np.float64), [0.0, 0.0, 1.0]])  # photo -> crop pixels
    n = rec.renderer.image_size
    k = float(np.hypot(m[0, 0], m[1, 0]))  # crop pixels per photo pixel
    res = int(np.clip(round(n / max(k, 1e-6)), n, max(size, n)))
    s = res / n  # crop -> high-resolution crop, pixel centres kept: x' = (x + 0.5) s - 0.5
    to_res = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5], [0, 0, 1.0]]) @ m
    warp = lambda x, border: cv2.warpAffine(x, to_res[:2], (res, res), flags=cv2.INTER_LINEAR,  # noqa: E731
                                            borderMode=border)
    crop = warp(img, cv2.BORDER_REPLICATE)
    inside = np.ones(img.shape[:2], np.float32)
    if visibility is not None:
        vis = np.asarray(torch.as_tensor(visibility).detach().cpu().float().squeeze())
        if vis.shape != img.shape[:2]:
            raise ValueError(f"visibility must be [{img.shape[0]}, {img.shape[1]}] like the photo, got {vis.shape}")
        inside = inside * vis
    mask = cv2.warpAffine(inside, to_res[:2], (res, res), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
    if rec.visibility is not None:
        seg = rec.visibility.detach().float().cpu().numpy()
        mask = mask * cv2.resize(seg, (res, res), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(crop).permute(2, 0, 1).float() / 255.0, torch.from_numpy(mask)


def bake_texture(rec, kind: str = "photo", size: int = 1024, photo=None, visibility=None) -> torch.Tensor:
    """Bake the reconstruction's texture in the face model's UV layout.

    Args:
        rec: a Reconstruction.
        kind: ``"photo"`` (the photo's pixels where it shows the face, albedo elsewhere) or
            ``"albedo"`` (the per-vertex albedo).
        size: texture side in texels (512 to 2048 are sensible).
        photo: the original photo (path, ``[H, W, 3]`` uint8 RGB array or tensor) for a photo
            texture at the photo's resolution; None samples the 224 x 224 crop (``rec.input``).
        visibility: optional per-pixel mask in [0, 1] (``[H, W]``, over ``photo`` if given, else
            over the crop): 0 where the photo must not be used (e.g. occluders). The model's face
            segmentation (``rec.visibility``, when the model has a segmenter) always applies too, so
            hair, hands and other occluders are not baked into the face.

    Returns:
        ``[size, size, 3]`` float texture in [0, 1], row 0 at the top (``v = 1``).
    """
    if kind not in TEXTURES:
        raise ValueError(f"texture kind must be one of {', '.join(TEXTURES)}, got {kind!r}")
    if not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 8192:
        raise ValueError(f"texture size must be an integer in [16, 8192], got {size!r}")
    atlas = rec.face_model.uv_atlas(int(size))
    albedo = rec.albedo.detach().float().to(atlas.device)
    if kind == "albedo":
        return bake.bake_vertex_colors(atlas, albedo)
    geo = posed_geometry(rec)
    if photo is not None and rec.transform is not None:
        image, mask = _photo_crop(rec, photo, visibility, int(size))
    else:
        image, mask = rec.input.detach().float().cpu(), None
        if visibility is not None:
            mask = torch.as_tensor(visibility).detach().float().cpu().squeeze()
        if rec.visibility is not None:
            seg = rec.visibility.detach().float().cpu()
            mask = seg if mask is None else mask * seg
    out = bake.bake_photo(atlas, image, geo["clip"], geo["world"], geo["normals"], geo["eye"], albedo,
                          geo["shading"], visibility=mask)
    return out["texture"]


def _texture_image(texture):
    arr = texture if isinstance(texture, np.ndarray) else bake.to_uint8(torch.as_tensor(texture))
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"texture must be [H, W, 3], got shape {arr.shape}")
    return Image.fromarray(arr)


# ---------------------------------------------------------------------------- meshes
def textured_mesh(rec, texture, name: str = "face", gltf: bool = False):
    """The reconstruction as a textured ``trimesh.Trimesh`` (model space, seams split).

    Args:
        rec: a Reconstruction.
        texture: ``[H, W, 3]`` texture (float in [0, 1] or uint8), e.g. from :func:`bake_texture`.
        name: material name (an OBJ export names its texture ``<name>.png``).
        gltf: a PBR material and positions in metres (for ``.glb``), else a simple material in the
            model's units.

    Returns:
        trimesh.Trimesh with ``visual.uv`` ``[N, 2]``, vertex normals and the texture; the
        split's ``vertex_of [N]`` (the model vertex of each vertex) is in ``metadata``.
    """
    fm = rec.face_model
    uv, uv_faces = fm.uv_layout()
    faces = rec.faces.detach().cpu().numpy()
    if uv_faces.shape != faces.shape:
        raise ValueError(f"the reconstruction has {faces.shape[0]} triangles but its face model's UV layout has "
                         f"{uv_faces.shape[0]}")
    verts = rec.vertices.detach().float().cpu()
    normals = vertex_normals(verts, fm.topology.on("cpu")).numpy()
    vertex_of, uv_of, split = split_seams(faces, uv_faces, verts.shape[0])
    image = _texture_image(texture)
    if gltf:
        material = PBRMaterial(name=name, baseColorTexture=image, metallicFactor=0.0, roughnessFactor=1.0)
    else:
        material = SimpleMaterial(name=name, image=image, diffuse=(255, 255, 255, 255), ambient=(255, 255, 255, 255),
                                  specular=(0, 0, 0, 255), glossiness=1.0)
    scale = GLTF_SCALE if gltf else 1.0
    mesh = trimesh.Trimesh(vertices=verts.double().numpy()[vertex_of] * scale, faces=split,
                           vertex_normals=normals[vertex_of],
                           visual=trimesh.visual.TextureVisuals(uv=uv[uv_of], material=material), process=False)
    mesh.metadata["vertex_of"] = vertex_of
    return mesh


def _vertex_color_mesh(rec, colors: str, gltf: bool = False):
    col = {"albedo": rec.albedo, "shaded": rec.shaded}.get(colors)
    if col is None:
        raise ValueError(f"colors must be 'albedo' or 'shaded', got {colors!r}")
    rgba = np.concatenate([bake.to_uint8(col), np.full((col.shape[0], 1), 255, np.uint8)], axis=1)
    verts = rec.vertices.detach().cpu().double().numpy() * (GLTF_SCALE if gltf else 1.0)
    return trimesh.Trimesh(vertices=verts, faces=rec.faces.detach().cpu().long().numpy(), vertex_colors=rgba,
                           process=False)


def blendshape_glb(rec, texture, name: str = "face") -> bytes:
    """The textured ``.glb`` of a reconstruction with its ARKit blendshapes as morph targets.

    The mesh is the face without expression (identity only), the 52 targets are the blendshapes'
    vertex offsets (metres, seam copies included) named by ARKit, and the mesh's weights are the
    reconstruction's :attr:`~pyfaid.reconstruct.Reconstruction.blendshapes`.

    Args:
        rec: a Reconstruction of a model with blendshapes.
        texture: ``[H, W, 3]`` texture (see :func:`textured_mesh`).
        name: material name.

    Returns:
        the file's bytes.

    Raises:
        NoBlendshapesError: the face model has none.
    """
    shapes = Blendshapes(rec.face_model)
    p = rec.parts()
    with torch.no_grad():
        neutral = rec.face_model.shape(p["id"][None], torch.zeros_like(p["exp"])[None])[0]
        deltas = shapes.deltas().detach().float().cpu().numpy()  # [52, V, 3] decimetres
    mesh = textured_mesh(dataclasses.replace(rec, vertices=neutral), texture, name=name, gltf=True)
    data = mesh.export(file_type="glb", include_normals=True)
    vertex_of = mesh.metadata["vertex_of"]
    return gltf.add_morph_targets(data, deltas[:, vertex_of] * GLTF_SCALE, shapes.names,
                                  shapes.weights(p["exp"]))


def face_json(rec) -> dict:
    """One face as plain JSON data: its source, face model, head pose (degrees), 68 landmarks
    (photo pixels) and, for a model with blendshapes, the 52 ARKit weights (``blendshapes``,
    ARKit's order) or else ``blendshapes: null``."""
    out = {"source": rec.source, "face_model": rec.face_model.meta.get("name", ""),
           "pose_degrees": rec.pose, "landmarks_photo_px": np.round(rec.landmarks, 3).tolist(),
           "blendshapes": rec.blendshapes if has_blendshapes(rec.face_model) else None}
    if rec.photo_size is not None:
        out["photo_size"] = {"height": int(rec.photo_size[0]), "width": int(rec.photo_size[1])}
    return out


# ---------------------------------------------------------------------------- files
def _check_path(path) -> tuple:
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown export format {ext or '(no extension)'!r}; "
                         f"use one of {', '.join(FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a folder, not a file name")
    return path, ext


def save(rec, path, vertex_colors: bool = False, colors: str = "albedo", texture="photo", texture_size: int = 1024,
         photo=None, visibility=None, blendshapes: bool = True) -> list:
    """Write the reconstruction to ``path``, in the format its extension names.

    ``.obj``: textured OBJ + ``<stem>.mtl`` + ``<stem>_texture.png`` beside it (with
    ``vertex_colors=True``: one OBJ with ``v x y z r g b`` lines instead). ``.glb``: binary glTF
    with the texture embedded (metres; with ``vertex_colors=True``, vertex colours instead) and,
    for a model with blendshapes, the 52 ARKit morph targets (see :func:`blendshape_glb`).
    ``.ply``: binary PLY with per-vertex RGBA colours. ``.npz``: coefficients, geometry, colours,
    landmarks, pose and camera (:meth:`Reconstruction.save_npz`). ``.json``: :func:`face_json`.

    Args:
        rec: a Reconstruction.
        path: output file; its folder must exist.
        vertex_colors: per-vertex colours instead of a texture (OBJ, glb).
        colors: which per-vertex colours (``"albedo"`` or ``"shaded"``) for vertex-colour files.
        texture: ``"photo"``, ``"albedo"`` (baked here, see :func:`bake_texture`) or a baked
            ``[H, W, 3]`` texture (float in [0, 1] or uint8) to reuse.
        texture_size: side of a texture baked here.
        photo, visibility: see :func:`bake_texture`.
        blendshapes: a textured ``.glb`` of a model with blendshapes holds them as morph targets
            (False: the reconstructed mesh alone, a few megabytes smaller).

    Returns:
        the files written (the mesh first).

    Raises:
        ValueError: an unknown extension, texture kind or colour choice (naming it).
        FileNotFoundError / IsADirectoryError: the folder is missing / ``path`` is a folder.
    """
    path, ext = _check_path(path)
    if ext == ".json":
        write_atomic(path, json.dumps(face_json(rec), indent=1).encode())
        return [path]
    if ext == ".npz":
        with atomic_path(path) as tmp:
            rec.save_npz(tmp)
        return [path]
    if ext == ".ply" or vertex_colors:
        mesh = _vertex_color_mesh(rec, colors, gltf=ext == ".glb")
        if ext == ".obj":
            data = mesh.export(file_type="obj", include_color=True)
        else:
            data = mesh.export(file_type=ext[1:])
        write_atomic(path, data)
        return [path]
    if isinstance(texture, str):
        texture = bake_texture(rec, texture, texture_size, photo=photo, visibility=visibility)
    stem = os.path.splitext(os.path.basename(path))[0]
    if ext == ".glb":
        if blendshapes and has_blendshapes(rec.face_model):
            data = blendshape_glb(rec, texture, name=stem)
        else:
            data = textured_mesh(rec, texture, name=stem, gltf=True).export(file_type="glb", include_normals=True)
        write_atomic(path, data)
        return [path]

    mesh = textured_mesh(rec, texture, name=f"{stem}_texture")
    text, files = export_obj(mesh, include_normals=True, include_color=False, include_texture=True,
                             return_texture=True, mtl_name=f"{stem}.mtl")
    folder = os.path.dirname(os.path.abspath(path))
    written = [path]
    for name, data in files.items():  # the MTL and the texture PNG
        write_atomic(os.path.join(folder, name), data)
        written.append(os.path.join(folder, name))
    write_atomic(path, text)
    return written
