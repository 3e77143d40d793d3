"""One reconstructed face: :class:`Reconstruction`, with its renders, exports and photo-space results.

Frames: the model saw a 224 x 224 *crop* (the photo warped by the alignment's similarity
``transform``, photo pixels -> crop pixels). Everything named ``*_crop`` lives in that crop;
``landmarks``, ``pose``, ``vertices_camera`` and ``intrinsics`` are in the original *photo*
(pixel centres at integer coordinates, x right, y down, as OpenCV).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import cv2
import numpy as np
import torch
import trimesh

from pyfaid.facemodel.blendshapes import Blendshapes
from pyfaid.metrics import psnr
from pyfaid.reconstruct import export, turntable
from pyfaid.reconstruct.detect import Crop
from pyfaid.reconstruct.fitting import Fit
from pyfaid.reconstruct.io import load_image, to_rgb_uint8
from pyfaid.reconstruct.predict import Prediction, crop_renderer
from pyfaid.render import camera as cam
from pyfaid.render.mesh import Render, UVTexture
from pyfaid.render.renderer import Renderer
from pyfaid.synth.contour import marching_for

__all__ = ["Reconstruction", "make_reconstruction", "results"]


def _inverse_similarity(m: np.ndarray) -> np.ndarray:
    a = np.vstack([np.asarray(m, np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


@dataclass
class Reconstruction:
    """One reconstructed face.

    Attributes:
        input: ``[3, 224, 224]`` aligned crop the model saw, RGB in [0, 1].
        coeffs: ``[layout.size]`` coefficients (``face_model.layout``).
        vertices: ``[V, 3]`` model-space vertices (identity + expression, no pose; x right, y up,
            z toward the camera, decimetres).
        faces: ``[F, 3]`` int64 triangles.
        albedo: ``[V, 3]`` vertex albedo in [0, 1] (fine colours when available).
        shaded: ``[V, 3]`` vertex colours with the estimated lighting applied, in [0, 1].
        face_model: the MorphableModel.
        renderer: the Renderer that frames ``input``.
        landmarks5: ``[5, 2]`` detected MTCNN points in the crop (or None).
        source: where the image came from (file name or "array").
        transform: ``2x3`` similarity from photo pixels to crop pixels (None: the input was a crop).
        photo_size: ``(height, width)`` of the original photo.
        detected_landmarks: ``[68, 2]`` detected 2D-style points in the crop: the landmark head's,
            or dlib's with ``landmarks="dlib"`` (None when there are none).
        landmark_confidence: ``[68]`` the landmark head's confidences (None for dlib's points).
        detected_landmarks_3d: ``[68, 2]`` the 3D-style head's points in the crop (None without one:
            a model with a 2D-style head only, such as the one shipped before both conventions).
        landmark_confidence_3d: ``[68]`` their confidences.
        landmark_source: where ``detected_landmarks`` come from: ``"head"``, ``"dlib"`` or None.
        detection_score: the face detector's probability (or None).
        fit_history: losses recorded during test-time fitting (empty without fitting).
        visibility: ``[224, 224]`` the face segmenter's probability that a crop pixel shows the face
            unoccluded (None when the model has no segmenter); photo textures skip what it rejects.
    """

    input: torch.Tensor
    coeffs: torch.Tensor
    vertices: torch.Tensor
    faces: torch.Tensor
    albedo: torch.Tensor
    shaded: torch.Tensor
    face_model: object = field(repr=False, default=None)
    renderer: object = field(repr=False, default=None)
    landmarks5: Optional[torch.Tensor] = None
    source: str = "array"
    transform: object = field(repr=False, default=None)
    photo_size: Optional[tuple] = None
    detected_landmarks: Optional[torch.Tensor] = None
    landmark_confidence: Optional[torch.Tensor] = None
    detection_score: Optional[float] = None
    fit_history: List[Dict[str, float]] = field(default_factory=list, repr=False)
    visibility: Optional[torch.Tensor] = field(default=None, repr=False)
    landmark_source: Optional[str] = None
    detected_landmarks_3d: Optional[torch.Tensor] = None
    landmark_confidence_3d: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ parts and frames
    def parts(self) -> Dict[str, torch.Tensor]:
        """The coefficient vector split by name (``id``, ``exp``, ``tex``, ``angle``, ``gamma``, ``trans``)."""
        return {k: v[0] for k, v in self.face_model.split_coeffs(self.coeffs[None]).items()}

    def _crop_to_photo(self) -> np.ndarray:
        return np.array([[1.0, 0, 0], [0, 1.0, 0]]) if self.transform is None else _inverse_similarity(self.transform)

    def to_photo(self, points_crop) -> np.ndarray:
        """Crop pixel coordinates ``[N, 2]`` -> photo pixel coordinates ``[N, 2]``."""
        a = self._crop_to_photo()
        p = np.asarray(torch.as_tensor(points_crop).detach().cpu(), np.float64)
        return p @ a[:, :2].T + a[:, 2]

    @property
    def landmarks_crop(self) -> torch.Tensor:
        """``[68, 2]`` the model's landmark vertices projected into the crop (3D-style points of the mesh)."""
        with torch.no_grad():
            return self.renderer.project_landmarks(self.face_model, self.coeffs[None])[0]

    @property
    def landmarks_2d_crop(self) -> torch.Tensor:
        """``[68, 2]`` the mesh's 2D-style points in the crop: its landmark vertices, with the jaw on
        the posed head's outline (:class:`pyfaid.synth.contour.LandmarkMarching`)."""
        with torch.no_grad():
            p = self.face_model.split_coeffs(self.coeffs[None])
            rot = cam.euler_rotation(p["angle"])
            verts = cam.to_camera(cam.apply_pose(self.vertices[None].to(rot.dtype), rot, p["trans"]),
                                  self.renderer.camera_distance)
            jaw, _ = marching_for(self.face_model).silhouette(verts, rot, p["trans"], self.renderer)
            return torch.cat([jaw[0, :17], self.landmarks_crop[17:]])

    @property
    def landmarks(self) -> np.ndarray:
        """``[68, 2]`` 2D-style landmarks in photo pixels (the jaw on the face's visible outline, as
        300-W and people draw them): after test-time fitting the fitted mesh's (:attr:`landmarks_2d_crop`:
        fitted to the landmark head's points, the photo and, with a segmenter, the face's outline);
        without fitting the landmark head's points when the model has one, else the mesh's. With
        ``landmarks="dlib"`` always dlib's points, fitted or not: on AFW they are much closer than the
        mesh fitted to them (NME 2.14 % against 4.03 % after 40 steps), but AFW is in dlib's training
        set (see :mod:`pyfaid.encoders.dlib_landmarks` for that and the licence caveat)."""
        use_detected = self.detected_landmarks is not None and (not self.fit_history or self.landmark_source == "dlib")
        pts = self.detected_landmarks if use_detected else self.landmarks_2d_crop
        return self.to_photo(pts)

    @property
    def landmarks_3d(self) -> np.ndarray:
        """``[68, 2]`` 3D-style landmarks in photo pixels (AFLW2000-3D / 3DDFA: fixed points of the
        head, drawn where they project, also when hidden): after fitting the fitted mesh's landmark
        vertices, without fitting the 3D-style head's points when the model has one, else the mesh's."""
        use_detected = self.detected_landmarks_3d is not None and not self.fit_history
        return self.to_photo(self.detected_landmarks_3d if use_detected else self.landmarks_crop)

    @property
    def landmarks_3d_xyz(self) -> np.ndarray:
        """``[68, 3]`` 3D-style landmarks with depth: x, y as :attr:`landmarks_3d` and z the mesh's
        landmark vertices' depth in photo pixels (at the landmarks' mean distance), positive towards
        the camera, zero mean (AFLW2000-3D's ``pt3d_68`` up to its depth offset)."""
        with torch.no_grad():
            p = self.parts()
            verts = self.vertices[self.face_model.landmark_idx][None].float()
            world = cam.apply_pose(verts, cam.euler_rotation(p["angle"][None].float()), p["trans"][None].float())
            depth = cam.to_camera(world, self.renderer.camera_distance)[0, :, 2].double().cpu().numpy()
        k = float(np.hypot(*self._crop_to_photo()[:, 0]))  # crop -> photo scale
        z = (depth.mean() - depth) * k * self.renderer.camera.focal / depth.mean()
        return np.concatenate([self.landmarks_3d, z[:, None]], 1)

    @property
    def model_landmarks(self) -> np.ndarray:
        """``[68, 2]`` the reconstructed mesh's landmark vertices projected into the photo."""
        return self.to_photo(self.landmarks_crop)

    @property
    def in_plane_rotation(self) -> float:
        """Rotation (radians, counter-clockwise as seen) of the photo's face relative to the crop."""
        if self.transform is None:
            return 0.0
        m = np.asarray(self.transform, np.float64)
        return math.atan2(m[1, 0], m[0, 0])

    @property
    def pose(self) -> Dict[str, float]:
        """Head pose in the photo, in degrees: ``yaw`` (+ nose toward the image right), ``pitch``
        (+ nose down), ``roll`` (+ head turned counter-clockwise as seen)."""
        a = self.parts()["angle"].detach().cpu().double()
        roll = float(a[2]) + self.in_plane_rotation
        roll = (roll + math.pi) % (2 * math.pi) - math.pi
        return {"yaw": math.degrees(float(a[1])), "pitch": math.degrees(float(a[0])), "roll": math.degrees(roll)}

    @property
    def intrinsics(self) -> np.ndarray:
        """``3x3`` pinhole matrix of the photo: ``K @ vertices_camera.T`` projects onto photo pixels."""
        c = self.renderer.camera
        k = float(np.hypot(*self._crop_to_photo()[:, 0]))  # the crop -> photo scale
        centre = self.to_photo(np.array([[c.center - 0.5, c.image_size - c.center - 0.5]]))[0]
        return np.array([[k * c.focal, 0, centre[0]], [0, k * c.focal, centre[1]], [0, 0, 1.0]])

    @property
    def vertices_camera(self) -> np.ndarray:
        """``[V, 3]`` posed mesh in the photo's camera frame (OpenCV axes: x right, y down, z
        forward; model units, decimetres), consistent with :attr:`intrinsics`."""
        with torch.no_grad():
            p = self.parts()
            world = cam.apply_pose(self.vertices[None].float(), cam.euler_rotation(p["angle"][None].float()),
                                   p["trans"][None].float())[0]
            xcam = cam.to_camera(world, self.renderer.camera_distance).double().cpu().numpy()
        xcv = xcam * np.array([1.0, -1.0, 1.0])  # y up -> y down
        # crop -> photo is k R(phi) plus a shift: turning the points by phi about the optical axis
        # and scaling the focal length by k (intrinsics) gives the photo's projection.
        a = self._crop_to_photo()
        cs = a[:, 0] / np.hypot(*a[:, 0])  # (cos phi, sin phi)
        rot = np.array([[cs[0], -cs[1], 0], [cs[1], cs[0], 0], [0, 0, 1.0]])
        return xcv @ rot.T

    @property
    def blendshapes(self) -> Dict[str, float]:
        """The expression as Apple ARKit's 52 blendshape weights, ``{name: weight in [0, 1]}`` in
        ARKit's order (``jawOpen``, ``mouthSmileLeft``, ``eyeBlinkLeft``, ...; ``Left`` is the
        face's own left, the image right of a frontal photo).

        A bounded least-squares fit of the expression (:class:`pyfaid.facemodel.blendshapes.Blendshapes`),
        for a face model built from the ARKit units (the default model).

        Raises:
            NoBlendshapesError: the face model has no blendshapes (e.g. BFM).
        """
        shapes = Blendshapes(self.face_model)
        return shapes.as_dict(shapes.weights(self.parts()["exp"]))

    # ------------------------------------------------------------------ renders
    @torch.no_grad()
    def render(self, pose=None, colors: Optional[torch.Tensor] = None, texture=None, antialias: bool = False,
               image_size: Optional[int] = None, lit: bool = True, filter_mode: str = "linear-mipmap-linear") -> Render:
        """Render the reconstruction in the crop's frame.

        Args:
            pose: None for the estimated pose, or ``(pitch, yaw, roll)`` rotation angles in radians
                (``[3]`` or ``[1, 3]``) replacing the estimated ones.
            colors: ``[V, 3]`` vertex colours to use instead of ``albedo``.
            texture: a UV texture to draw instead of the vertex colours: ``[H, W, 3]`` in the face
                model's UV layout (float in [0, 1] or uint8, e.g. :meth:`texture`), or a
                :class:`~pyfaid.render.UVTexture` (``face_model.uv_texture(image)``: its mip
                pyramid built once, for many renders). Drawn per pixel, trilinear, under the
                estimated light (:meth:`Renderer.shade_texture <pyfaid.render.Renderer.shade_texture>`).
            antialias: antialias the outline (``mask`` is then the fractional coverage).
            image_size: render at this size (the crop's framing scaled), default the crop's 224.
            lit: False draws the bare ``texture`` (its albedo), without light; needs ``texture``
                (:meth:`render_albedo` draws the vertex albedo unlit).
            filter_mode: the ``texture``'s filter: trilinear by default, ``"linear"`` for a
                bilinear lookup of the full-resolution texture (see
                :func:`pyfaid.render.shade_texture`).

        Returns:
            :class:`~pyfaid.render.Render` with batch size 1: ``image [1, 3, S, S]`` (0 outside the
            face), ``mask [1, 1, S, S]``, ``landmarks_px [1, 68, 2]``, ``vertices_cam``, ``shaded``, ``mesh``.
        """
        if not lit and texture is None:
            raise ValueError("Reconstruction.render: lit=False draws a `texture` unlit; render_albedo() draws "
                             "the vertex albedo without light")
        dev = self.coeffs.device
        col = (self.albedo if colors is None else colors).to(dev)[None]
        c = self.coeffs[None]
        angles = None if pose is None else torch.as_tensor(pose, dtype=c.dtype, device=dev).reshape(1, 3)
        renderer = self.renderer
        if antialias or (image_size is not None and int(image_size) != renderer.image_size):
            size = renderer.image_size if image_size is None else int(image_size)
            renderer = Renderer(camera=renderer.camera.scaled(size), ambient_offset=renderer.ambient_offset,
                                antialias=antialias)
        mesh = self.face_model.mesh(c, col, angles)
        if texture is None:
            return renderer.draw(mesh)
        return renderer.draw(mesh, self._uv_texture(texture, mesh.vertices_world), lit, filter_mode)

    def _uv_texture(self, texture, like: torch.Tensor) -> UVTexture:
        """``texture`` as a :class:`UVTexture` in the dtype and on the device of ``like``."""
        if isinstance(texture, UVTexture):
            return texture
        tex = torch.as_tensor(texture)
        tex = tex.float() / 255.0 if tex.dtype == torch.uint8 else tex
        if tex.dim() != 3 or tex.shape[2] != 3:
            raise ValueError(f"Reconstruction.render: `texture` must be [H, W, 3] in the face model's UV layout, "
                             f"got {tuple(tex.shape)}")
        return self.face_model.uv_texture(tex.to(like.device, like.dtype))

    @torch.no_grad()
    def render_albedo(self, pose=None) -> Render:
        """Render the albedo under uniform light (the texture without shading)."""
        c = self.coeffs.clone()
        c[self.face_model.layout.slice("gamma")] = 0
        flat = Reconstruction(self.input, c, self.vertices, self.faces, self.albedo, self.shaded,
                              self.face_model, self.renderer)
        # The Renderer shades with its ambient term: find that constant and divide it out.
        gain = flat.render(colors=torch.ones_like(self.albedo)).shaded[0].mean().clamp_min(1e-6)
        return flat.render(pose=pose, colors=self.albedo / gain)

    def masked_psnr(self) -> float:
        """PSNR (dB) of the render against :attr:`input` over the rendered face region."""
        out = self.render()
        return float(psnr(out.image.clamp(0, 1).cpu(), self.input[None].cpu(), out.mask.cpu())[0])

    @torch.no_grad()
    def overlay(self, photo, alpha: float = 0.75, landmarks: bool = True) -> np.ndarray:
        """The shaded render and the 68 landmarks drawn over the original photo.

        Args:
            photo: the photo this face came from (``[H, W, 3]`` uint8 RGB, a path or a tensor).
            alpha: opacity of the render.
            landmarks: also draw the 68 points: 2D-style (:attr:`landmarks`, green, joined along the
                jaw) and 3D-style (:attr:`landmarks_3d`, red).

        Returns:
            ``[H, W, 3]`` uint8 RGB.
        """
        img = load_image(photo) if isinstance(photo, (str, bytes)) or hasattr(photo, "__fspath__") else to_rgb_uint8(photo)
        h, w = img.shape[:2]
        out = self.render()
        rgb = (out.image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.float32)
        mask = out.mask[0, 0].cpu().numpy().astype(np.float32)
        a = self._crop_to_photo()
        warp = lambda x: cv2.warpAffine(x, a, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)  # noqa: E731
        m = warp(mask)[..., None] * alpha
        res = (img.astype(np.float32) * (1 - m) + warp(rgb) * m).clip(0, 255).astype(np.uint8)
        if landmarks:
            r = max(1, int(round(max(h, w) / 400)))
            pts2, pts3 = self.landmarks, self.landmarks_3d
            cv2.polylines(res, [np.round(pts2[:17] * 16).astype(np.int32)], False, (40, 230, 40), max(1, r // 2),
                          cv2.LINE_AA, 4)
            for pts, colour in ((pts3, (230, 40, 40)), (pts2, (40, 230, 40))):
                for x, y in pts:
                    cv2.circle(res, (int(round(x)), int(round(y))), r, colour, -1, cv2.LINE_AA)
        return res

    @torch.no_grad()
    def strip(self, novel_yaw: float = 0.6) -> np.ndarray:
        """The PNG strip: input with landmarks | overlay | shaded render | albedo render | two novel views.

        Returns:
            ``[224, 6 * 224, 3]`` uint8 RGB.
        """
        inp = self.input.detach().cpu().float()
        main = self.render()
        img, mask = main.image[0].cpu().clamp(0, 1), main.mask[0].cpu()
        white = torch.ones_like(inp)
        tiles = [self._with_points(inp), mask * img + (1 - mask) * inp, mask * img + (1 - mask) * white]
        alb = self.render_albedo()
        tiles.append(alb.mask[0].cpu() * alb.image[0].cpu().clamp(0, 1) + (1 - alb.mask[0].cpu()) * white)
        angles = self.parts()["angle"].detach()
        for sign in (-1.0, 1.0):
            pose = angles.clone()
            pose[1] = pose[1] + sign * novel_yaw
            v = self.render(pose=pose)
            tiles.append(v.mask[0].cpu() * v.image[0].cpu().clamp(0, 1) + (1 - v.mask[0].cpu()) * white)
        strip = torch.cat(tiles, dim=2).permute(1, 2, 0).numpy()
        return (strip * 255 + 0.5).astype(np.uint8)

    def _with_points(self, crop: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray((crop.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        pts = self.detected_landmarks if self.detected_landmarks is not None else self.landmarks_crop
        for x, y in np.asarray(pts.detach().cpu()):
            cv2.circle(arr, (int(round(float(x))), int(round(float(y)))), 1, (40, 230, 40), -1, cv2.LINE_AA)
        return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0

    # ------------------------------------------------------------------ exports
    def _trimesh(self, colors: str = "albedo"):
        col = {"albedo": self.albedo, "shaded": self.shaded}[colors]
        rgba = np.concatenate(
            [(col.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8),
             np.full((col.shape[0], 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(vertices=self.vertices.detach().cpu().double().numpy(),
                               faces=self.faces.detach().cpu().long().numpy(), vertex_colors=rgba, process=False)

    def save_obj(self, path, colors: str = "albedo") -> None:
        """Write a Wavefront OBJ with per-vertex colours (``v x y z r g b``) via trimesh.

        Args:
            path: output file.
            colors: ``"albedo"`` (default) or ``"shaded"``.
        """
        self._trimesh(colors).export(str(path), file_type="obj", include_color=True)

    def save_ply(self, path, colors: str = "albedo") -> None:
        """Write a binary PLY with per-vertex RGBA colours via trimesh.

        Args:
            path: output file.
            colors: ``"albedo"`` (default) or ``"shaded"``.
        """
        self._trimesh(colors).export(str(path), file_type="ply")

    def save_npz(self, path) -> None:
        """Write coefficients (whole and by part), the mesh, colours, landmarks in both conventions,
        head pose, camera and the alignment transform to an ``.npz``; every key that holds points
        names their frame: ``vertices_model`` (model frame, decimetres), ``vertices_camera`` (the
        photo's camera, OpenCV axes), ``landmarks_photo_px`` (68 points, 2D-style: the jaw on the
        face's visible outline, :attr:`landmarks`, pixels of the photo), ``landmarks_crop_px`` (the
        mesh's 2D-style points, pixels of the 224 crop), ``landmarks_3d_photo_px`` /
        ``landmarks_3d_crop_px`` (3D-style: :attr:`landmarks_3d` / the mesh's landmark vertices
        projected), ``landmarks_3d_xyz_photo_px`` (3D-style with depth, :attr:`landmarks_3d_xyz`),
        ``landmarks5_crop_px`` (the detector's 5 points), ``intrinsics_photo_px`` (3 x 3, pixels of
        the photo), ``transform_photo_to_crop`` (2 x 3)."""
        arrays = {"coeffs": self.coeffs.detach().cpu().numpy(), "vertices_model": self.vertices.detach().cpu().numpy(),
                  "faces": self.faces.detach().cpu().numpy(), "albedo": self.albedo.detach().cpu().numpy(),
                  "shaded": self.shaded.detach().cpu().numpy(),
                  "landmarks5_crop_px": (self.landmarks5.detach().cpu().numpy() if self.landmarks5 is not None
                                         else np.zeros((0, 2), np.float32))}
        if self.face_model is not None:
            arrays.update({f"coeff_{k}": v.detach().cpu().numpy() for k, v in self.parts().items()})
        if self.renderer is not None and self.face_model is not None:
            arrays["landmarks_photo_px"] = self.landmarks.astype(np.float32)
            arrays["landmarks_crop_px"] = self.landmarks_2d_crop.detach().cpu().numpy()
            arrays["landmarks_3d_photo_px"] = self.landmarks_3d.astype(np.float32)
            arrays["landmarks_3d_crop_px"] = self.landmarks_crop.detach().cpu().numpy()
            arrays["landmarks_3d_xyz_photo_px"] = self.landmarks_3d_xyz.astype(np.float32)
            arrays["pose_degrees"] = np.array([self.pose[k] for k in ("yaw", "pitch", "roll")], np.float32)
            arrays["intrinsics_photo_px"] = self.intrinsics
            arrays["vertices_camera"] = self.vertices_camera.astype(np.float32)
        if self.transform is not None:
            arrays["transform_photo_to_crop"] = np.asarray(self.transform, np.float64)
        np.savez_compressed(str(path), **arrays)

    # ------------------------------------------------------------------ textured exports (export.py, turntable.py)
    def texture(self, kind: str = "photo", size: int = 1024, photo=None, visibility=None) -> torch.Tensor:
        """Bake a ``[size, size, 3]`` texture in the face model's UV layout: ``"photo"`` (the photo
        where it shows the face, divided by the shading; ``photo`` = the original photo for its full
        resolution) or ``"albedo"``. See :func:`pyfaid.reconstruct.export.bake_texture`."""
        return export.bake_texture(self, kind, size, photo=photo, visibility=visibility)

    def save(self, path, **options) -> list:
        """Write ``.obj`` (textured, or ``vertex_colors=True``), ``.glb``, ``.ply`` or ``.npz``, by
        the extension; returns the files written. Options: see :func:`pyfaid.reconstruct.export.save`."""
        return export.save(self, path, **options)

    def turntable(self, n: int = 36, path=None, **options) -> list:
        """``n`` frames of the textured head turning (``[S, S, 3]`` uint8), written to ``path``
        (``.gif`` or a ``.png`` grid) if given. See :func:`pyfaid.reconstruct.turntable.turntable`."""
        return turntable.turntable(self, n, path, **options)


def make_reconstruction(face_model, renderer, crop, coeffs, colors, lm5, source, transform, history,
                        photo_size=None, detected=None, confidence=None, score=None, visibility=None,
                        landmark_source=None, detected_3d=None, confidence_3d=None) -> Reconstruction:
    """Assemble a :class:`Reconstruction` from one face's coefficients (``[layout.size]``) and albedo."""
    with torch.no_grad():
        c = coeffs[None]
        parts = face_model.split_coeffs(c)
        verts = face_model.shape(parts["id"], parts["exp"])[0]
        out = renderer(face_model, c, colors=None if colors is None else colors[None])
    return Reconstruction(
        input=crop.detach(), coeffs=coeffs.detach(), vertices=verts.detach(),
        faces=face_model.triangles.detach().long(), albedo=out.mesh.albedo[0].detach().clamp(0, 1),
        shaded=out.shaded[0].detach().clamp(0, 1), face_model=face_model, renderer=renderer,
        landmarks5=None if lm5 is None else lm5.detach(), source=source, transform=transform,
        photo_size=photo_size, detected_landmarks=None if detected is None else detected.detach(),
        landmark_confidence=None if confidence is None else confidence.detach(), detection_score=score,
        fit_history=history, visibility=None if visibility is None else visibility.detach().reshape(crop.shape[-2:]),
        landmark_source=landmark_source, detected_landmarks_3d=None if detected_3d is None else detected_3d.detach(),
        landmark_confidence_3d=None if confidence_3d is None else confidence_3d.detach())


def results(crops: List[Crop], pred: Prediction, fit: Fit, face_model, landmark_source: Optional[str] = None) -> list:
    """Pipeline step 4, result: one :class:`Reconstruction` per crop, in photo terms.

    Args:
        crops: the faces (:class:`~pyfaid.reconstruct.detect.Crop`).
        pred: their :class:`~pyfaid.reconstruct.predict.Prediction` (landmarks of both conventions,
            confidences, visibility).
        fit: their :class:`~pyfaid.reconstruct.fitting.Fit` (coefficients, albedo, histories).
        face_model: the MorphableModel.
        landmark_source: where ``pred``'s 68 2D-style points come from (``"head"``, ``"dlib"``), None without.
    """
    renderer = crop_renderer(fit.coeffs.device)
    lm, conf, vis = pred.landmarks_crop_px, pred.landmark_confidence, pred.visibility
    lm3, conf3 = pred.landmarks_3d_crop_px, pred.landmark_confidence_3d
    return [make_reconstruction(face_model, renderer, c.image, fit.coeffs[k], None if fit.albedo is None else fit.albedo[k],
                                c.landmarks5_crop_px, c.source, c.photo_to_crop, fit.histories[k], photo_size=c.photo_size,
                                detected=None if lm is None else lm[k], confidence=None if conf is None else conf[k],
                                score=c.detection.score, visibility=None if vis is None else vis[k],
                                landmark_source=None if lm is None else landmark_source,
                                detected_3d=None if lm3 is None else lm3[k],
                                confidence_3d=None if conf3 is None else conf3[k])
            for k, c in enumerate(crops)]
