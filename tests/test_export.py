"""Textured exports: UV layouts of the face models, seam splitting, texture baking of a
reconstruction, OBJ/MTL/PNG and glb round trips (trimesh and pygltflib), rendering the exported
files back with pyfaid, the turntable, bad inputs and the command-line flags."""

import io
import os

import numpy as np
import pytest
import torch

from pyfaid.reconstruct.predict import crop_renderer, default_face_model
from pyfaid import reconstruct as R
from pyfaid.facemodel import MorphableModel, uv as uvlib
from pyfaid.reconstruct import export, turntable
from pyfaid.reconstruct.result import make_reconstruction
from pyfaid.render import bake


# ----------------------------------------------------------------------------- fixtures
def _tiny_model():
    """A unit icosphere (closed: the generated layout needs a seam), no UV layout of its own."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3)
    v = torch.tensor(mesh.vertices, dtype=torch.float32)
    n = v.shape[0]
    g = torch.Generator().manual_seed(0)
    return MorphableModel(v, torch.zeros(3 * n, 2), torch.zeros(3 * n, 1), 0.2 + 0.6 * torch.rand(n, 3, generator=g),
                          torch.zeros(3 * n, 1), torch.tensor(mesh.faces), torch.arange(68) % n,
                          torch.ones(n, dtype=torch.bool))


def _reconstruction(fm, angle=(0.1, -0.35, 0.05), colors=None, image=None, seed=3):
    """A reconstruction with known coefficients; its input is its own render (or ``image``)."""
    renderer = crop_renderer("cpu")
    g = torch.Generator().manual_seed(seed)
    lay = fm.layout
    c = lay.zeros(1)
    c[0, lay.slice("id")] = 0.5 * torch.randn(fm.n_id, generator=g)
    c[0, lay.slice("angle")] = torch.tensor(angle)
    gam = lay.slice("gamma").start
    c[0, gam] = 0.25
    c[0, gam + 1:gam + 4] = torch.tensor([0.1, 0.25, -0.1])
    with torch.no_grad():
        out = renderer(fm, c, colors=None if colors is None else colors[None])
    if image is None:
        image = (out.mask * out.image + (1 - out.mask) * 0.3)[0]
    return make_reconstruction(fm, renderer, image, c[0], colors, None, "synthetic", None, [])


@pytest.fixture(scope="module")
def default_model():
    return default_face_model("cpu")


@pytest.fixture(scope="module")
def tiny_rec():
    return _reconstruction(_tiny_model(), angle=(0.2, 0.5, 0.0))


def _uv_areas(uv, uv_faces):
    a = uv[uv_faces]
    return 0.5 * ((a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) - (a[:, 1, 1] - a[:, 0, 1]) * (a[:, 2, 0] - a[:, 0, 0]))


def _check_layout_is_a_valid_atlas(uv, uv_faces, tri, size=512):
    """In [0, 1], one UV triangle per triangle, finite, no fold-overs, no overlaps."""
    assert np.isfinite(uv).all() and uv.min() >= 0 and uv.max() <= 1
    assert uv_faces.shape == tri.shape and uv_faces.min() >= 0 and uv_faces.max() < len(uv)
    area = _uv_areas(uv.astype(np.float64), uv_faces)
    assert (np.abs(area) > 0).mean() > 0.9999
    # every island keeps one orientation (folded-over triangles would flip sign)
    _, label = uvlib.islands(uv_faces, len(uv))
    for i in np.unique(label):
        a = area[label == i]
        minority = min(a[a > 0].sum(), -a[a < 0].sum())
        assert minority < 1e-4 * np.abs(a).sum(), (i, minority)
    # no two triangles on the same texels: the summed areas equal the covered part of the square
    atlas = bake.UVAtlas(uv, uv_faces, tri, int(tri.max()) + 1, size=size, padding=0)
    covered = float(atlas.mask.float().mean())
    assert abs(np.abs(area).sum() - covered) < 0.01 * covered + 8.0 / size, (np.abs(area).sum(), covered)


# ----------------------------------------------------------------------------- UV layouts
def test_default_model_uv_layout_is_valid(default_model):
    fm = default_model
    uv, uvf = fm.uv.numpy(), fm.uv_faces.numpy()
    tri = fm.triangles.numpy()
    assert uv.dtype == np.float32 and uvf.shape == tri.shape
    _check_layout_is_a_valid_atlas(uv, uvf, tri)
    # MakeHuman's layout: the face and the under-chin patch (a seam along the jaw), and the two eye
    # openings, each an island of its own (seams along the lid margins)
    count, label = uvlib.islands(uvf, len(uv))
    assert count == 4
    per_vertex = {}
    for t, f in zip(tri.reshape(-1), uvf.reshape(-1)):
        per_vertex.setdefault(int(t), set()).add(int(f))
    seam = [v for v, s in per_vertex.items() if len(s) > 1]
    assert len(per_vertex) == fm.num_vertices and 0 < len(seam) < 0.03 * fm.num_vertices
    assert len(uv) == fm.num_vertices + sum(len(per_vertex[v]) - 1 for v in seam)
    lm = fm.mean_shape[fm.landmark_idx].numpy()
    eyes = [lm[36:42].mean(0), lm[42:48].mean(0)]
    sizes = np.bincount(label)
    for i in np.argsort(sizes)[:2]:  # the two smallest islands sit on the eyes
        centre = fm.mean_shape.numpy()[tri[label == i].reshape(-1)].mean(0)
        assert min(np.linalg.norm(centre - e) for e in eyes) < 0.05
    # upright: the forehead (high y) sits above the chin (low y) in the texture (v up)
    vv = np.zeros(fm.num_vertices)
    vv[tri.reshape(-1)] = uv[uvf.reshape(-1), 1]
    y = fm.mean_shape[:, 1].numpy()
    main = np.zeros(fm.num_vertices, bool)
    main[tri[label == np.bincount(label).argmax()].reshape(-1)] = True
    assert np.corrcoef(y[main], vv[main])[0, 1] > 0.9
    # the hole-closing strips (eyes, mouth) have proper UVs too: no zero-area UV triangle
    assert (np.abs(_uv_areas(uv.astype(np.float64), uvf)) > 0).all()


def test_generated_layouts_are_valid():
    import trimesh

    # a closed mesh: the cylindrical unwrap needs a seam at the back
    sphere = trimesh.creation.icosphere(subdivisions=3)
    uv, uvf = uvlib.cylindrical_layout(sphere.vertices, sphere.faces)
    assert len(uv) > len(sphere.vertices)  # seam vertices got a second UV
    _check_layout_is_a_valid_atlas(uv, uvf, sphere.faces)
    # a face-like open shell: one island, no seam, arc length along u
    xs, ys = np.meshgrid(np.linspace(-1.2, 1.2, 30), np.linspace(-1, 1, 25))
    th = xs / 1.5
    pts = np.stack([1.5 * np.sin(th), ys, 1.5 * np.cos(th)], -1).reshape(-1, 3)
    i = (np.arange(29)[None] + 30 * np.arange(24)[:, None]).reshape(-1)
    tri = np.concatenate([np.stack([i, i + 1, i + 31], 1), np.stack([i, i + 31, i + 30], 1)])
    uv, uvf = uvlib.cylindrical_layout(pts, tri)
    assert len(uv) == len(pts) and uvlib.islands(uvf, len(uv))[0] == 1
    _check_layout_is_a_valid_atlas(uv, uvf, tri)
    per_vertex = np.zeros((len(pts), 2))
    per_vertex[tri.reshape(-1)] = uv[uvf.reshape(-1)]
    du = np.diff(per_vertex[:30, 0])  # equal arc steps -> equal u steps, same scale as v
    np.testing.assert_allclose(du, du.mean(), rtol=1e-6)
    dv = per_vertex[30, 1] - per_vertex[0, 1]
    np.testing.assert_allclose(du.mean() / dv, (1.5 * (2.4 / 1.5) / 29) / (2 / 24), rtol=1e-6)


def test_bfm_gets_a_generated_layout(tmp_path):
    import scipy.io
    import trimesh

    from pyfaid import facemodel

    shell = trimesh.creation.icosphere(subdivisions=2)
    keep = shell.vertices[:, 2] > 0.1  # the front cap of a sphere, like the front-face BFM
    faces = shell.faces[keep[shell.faces].all(1)]
    used = np.unique(faces)
    remap = np.full(len(shell.vertices), -1)
    remap[used] = np.arange(len(used))
    v, tri, nv = shell.vertices[used] * 1e5 / 10, remap[faces], len(used)
    g = np.random.default_rng(0)
    scipy.io.savemat(str(tmp_path / "BFM_model_front.mat"), dict(
        meanshape=v.reshape(1, -1), idBase=g.standard_normal((3 * nv, 4)), exBase=g.standard_normal((3 * nv, 3)),
        meantex=g.uniform(20, 230, (1, 3 * nv)), texBase=g.standard_normal((3 * nv, 5)),
        tri=(tri + 1).astype(np.float64), keypoints=(np.arange(68) % nv + 1).astype(np.float64)))
    m = facemodel.load(str(tmp_path / "BFM_model_front.mat"))
    assert m.uv is not None and m.uv_faces.shape == m.triangles.shape
    assert uvlib.islands(m.uv_faces.numpy(), m.uv.shape[0])[0] == 1  # the front face needs no seam
    _check_layout_is_a_valid_atlas(m.uv.numpy(), m.uv_faces.numpy(), m.triangles.numpy())


def test_model_uv_fields_npz_and_errors(tmp_path):
    fm = _tiny_model()
    assert fm.uv is None and fm.uv_faces is None
    uv, uvf = fm.uv_layout()  # generated on the fly, cached on the model
    assert fm.uv_layout()[0] is uv
    kw = {k: getattr(fm, k) for k in ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base", "triangles",
                                      "landmark_idx", "face_mask")}
    with_uv = MorphableModel(**kw, uv=uv, uv_faces=uvf)
    assert with_uv.uv.dtype == torch.float32 and with_uv.uv_faces.dtype == torch.int32
    assert with_uv.to(torch.float64).uv is not None
    with_uv.save_npz(str(tmp_path / "m.npz"))
    back = MorphableModel.from_npz(str(tmp_path / "m.npz"))
    assert torch.equal(back.uv, with_uv.uv) and torch.equal(back.uv_faces, with_uv.uv_faces)
    fm.save_npz(str(tmp_path / "plain.npz"))
    assert MorphableModel.from_npz(str(tmp_path / "plain.npz")).uv is None
    with pytest.raises(ValueError, match="both uv and uv_faces"):
        MorphableModel(**kw, uv=uv)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MorphableModel(**kw, uv=uv * 2, uv_faces=uvf)
    with pytest.raises(ValueError, match="rows but the mesh has"):
        MorphableModel(**kw, uv=uv, uv_faces=uvf[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        MorphableModel(**kw, uv=np.full_like(uv, np.nan), uv_faces=uvf)
    with pytest.raises(ValueError, match="indices must lie"):
        MorphableModel(**kw, uv=uv, uv_faces=uvf + len(uv))


def test_split_seams():
    # two triangles sharing the edge (1, 2); vertex 2 has a different UV in the second one (a seam)
    tri = np.array([[0, 1, 2], [2, 1, 3]])
    uvf = np.array([[0, 1, 2], [4, 1, 3]])
    vertex_of, uv_of, faces = uvlib.split_seams(tri, uvf, 5)  # vertex 4 is used by no triangle
    assert len(vertex_of) == 6 and list(vertex_of[:5]) == [0, 1, 2, 3, 4] and vertex_of[5] == 2
    np.testing.assert_array_equal(vertex_of[faces], tri)  # same corners
    np.testing.assert_array_equal(uv_of[faces], uvf)  # each with its own UV
    assert faces[0, 2] == 2 and faces[1, 0] == 5
    # no seam: nothing to split
    v2, u2, f2 = uvlib.split_seams(tri, np.array([[0, 1, 2], [2, 1, 3]]))
    assert len(v2) == 4 and np.array_equal(f2, tri)
    with pytest.raises(ValueError, match="same shape"):
        uvlib.split_seams(tri, uvf[:1])


# ----------------------------------------------------------------------------- textures
def test_albedo_texture_renders_like_the_vertex_colours(default_model):
    rec = _reconstruction(default_model)
    tex = rec.texture("albedo", 512)
    assert tex.shape == (512, 512, 3) and float(tex.min()) >= 0 and float(tex.max()) <= 1
    from pyfaid.metrics import psnr

    ref = rec.render()
    got = turntable.render_textured(rec, tex, image_size=224, antialias=False)
    mask = ref["mask"] * got["mask"][None]
    assert float(psnr(got["image"][None], ref["image"], mask)[0]) > 35


def test_photo_texture_carries_the_photo_and_honours_visibility(default_model):
    """The input shows stripes the per-vertex albedo lacks: the photo texture brings them back where
    the photo shows the face; a visibility mask of zeros gives the albedo texture."""
    from pyfaid.metrics import psnr

    fm = default_model
    smooth = _reconstruction(fm)
    x = smooth.vertices[:, 0]
    striped = (smooth.albedo * (1 + 0.35 * torch.sin(40 * x))[:, None]).clamp(0, 1)
    photo_render = smooth.renderer(fm, smooth.coeffs[None], colors=striped[None])
    image = (photo_render.mask * photo_render.image + (1 - photo_render.mask) * 0.3)[0]
    rec = _reconstruction(fm, image=image)  # albedo: the smooth one; input: the striped photo
    mask = photo_render.mask

    def score(tex):
        out = turntable.render_textured(rec, tex, image_size=224, antialias=False)
        return float(psnr(out["image"][None], image[None], mask * out["mask"][None])[0])

    photo_tex, albedo_tex = rec.texture("photo", 1024), rec.texture("albedo", 1024)
    # > 30 dB with a bilinear lookup; the trilinear one blurs by about a pixel (-0.6 dB here)
    assert score(photo_tex) > 29 and score(photo_tex) > score(albedo_tex) + 6
    none = torch.zeros(224, 224)
    torch.testing.assert_close(rec.texture("photo", 1024, visibility=none), albedo_tex, atol=1e-6, rtol=0)
    left = torch.ones(224, 224)
    left[:, :112] = 0  # the photo may only be used on the image's right half
    half = rec.texture("photo", 1024, visibility=left)
    atlas = fm.uv_atlas(1024)
    geo = export.posed_geometry(rec)
    c = atlas.interpolate(geo["clip"])
    ndc_x = c[..., 0] / c[..., 3].clamp_min(1e-6)
    far_left = atlas.mask & (ndc_x < -0.1)
    assert far_left.sum() > 1000
    torch.testing.assert_close(half[far_left], albedo_tex[far_left], atol=1e-6, rtol=0)
    assert (half[atlas.mask & (ndc_x > 0.1)] - albedo_tex[atlas.mask & (ndc_x > 0.1)]).abs().mean() > 0.02
    # the segmenter's visibility kept on the reconstruction applies by itself, on top of any mask
    rec.visibility = left
    torch.testing.assert_close(rec.texture("photo", 1024), half, atol=1e-6, rtol=0)
    torch.testing.assert_close(rec.texture("photo", 1024, visibility=left.flip(1)), albedo_tex, atol=1e-6, rtol=0)


def test_photo_texture_from_the_original_photo(default_model):
    """With the photo and its photo -> crop transform, the texture is sampled from the photo: the
    same as from the crop (here the photo is the crop scaled up 2.5 x and shifted)."""
    import cv2

    rec = _reconstruction(default_model)
    crop = (rec.input.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    m = np.array([[0.4, 0.0, -30.0], [0.0, 0.4, -12.0]])  # photo -> crop
    inv = cv2.invertAffineTransform(m)
    photo = cv2.warpAffine(crop, inv, (700, 640), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    rec.transform, rec.photo_size = m, (640, 700)
    from_crop = rec.texture("photo", 512)
    from_photo = rec.texture("photo", 512, photo=photo)
    err = (from_photo - from_crop).abs()[default_model.uv_atlas(512).mask]
    assert float(err.mean()) < 0.01, float(err.mean())
    with pytest.raises(ValueError, match="700 x 640"):
        rec.texture("photo", 512, photo=photo[:100])


# ----------------------------------------------------------------------------- files
def _material_image(mesh):
    mat = mesh.visual.material
    img = getattr(mat, "baseColorTexture", None)
    return img if img is not None else mat.image


def _render_file(path, rec, scale=1.0, image_size=224):
    """Render an exported textured mesh with pyfaid in the reconstruction's camera and light."""
    import trimesh

    from pyfaid.render import camera as cam, interpolate, rasterize, sh_shading

    m = trimesh.load(str(path), process=False, force="mesh")
    verts = torch.tensor(np.asarray(m.vertices) / scale, dtype=torch.float32)
    faces = torch.tensor(np.asarray(m.faces), dtype=torch.int32)
    uv = torch.tensor(np.asarray(m.visual.uv), dtype=torch.float32)
    normals = torch.tensor(np.asarray(m.vertex_normals), dtype=torch.float32)
    tex = torch.tensor(np.asarray(_material_image(m).convert("RGB")), dtype=torch.float32) / 255
    p = rec.parts()
    rot = cam.euler_rotation(p["angle"][None])
    world = cam.apply_pose(verts[None], rot, p["trans"][None])
    shading = sh_shading((normals[None] @ rot.transpose(1, 2)).contiguous(), torch.ones(1, len(verts), 3),
                         rec.renderer.lit_gamma(p["gamma"][None]))
    camera = rec.renderer.camera.scaled(image_size)
    rast = rasterize(camera.clip(world), faces, (image_size, image_size))
    color = bake.texture_lookup(tex, interpolate(uv[None], rast, faces)) * interpolate(shading, rast, faces)
    mask = (rast[..., 3:] > 0).float()
    return (color * mask).clamp(0, 1).permute(0, 3, 1, 2), mask.permute(0, 3, 1, 2), m


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_textured_round_trip_renders_like_the_reconstruction(default_model, tmp_path, fmt):
    from pyfaid.metrics import psnr

    rec = _reconstruction(default_model)
    files = rec.save(tmp_path / f"face.{fmt}", texture="albedo", texture_size=1024)
    if fmt == "obj":
        assert sorted(os.path.basename(f) for f in files) == ["face.mtl", "face.obj", "face_texture.png"]
        assert "map_Kd face_texture.png" in (tmp_path / "face.mtl").read_text()
    else:
        assert files == [str(tmp_path / "face.glb")]
    image, mask, mesh = _render_file(files[0], rec, scale=export.GLTF_SCALE if fmt == "glb" else 1.0)
    vertex_of, _, _ = uvlib.split_seams(rec.faces.numpy(), default_model.uv_faces.numpy(), default_model.num_vertices)
    assert len(mesh.vertices) == len(vertex_of) == default_model.uv.shape[0]
    assert len(mesh.faces) == len(rec.faces)
    uv = np.asarray(mesh.visual.uv)
    assert uv.shape == (len(mesh.vertices), 2) and uv.min() >= 0 and uv.max() <= 1
    assert _material_image(mesh).size == (1024, 1024)
    # trimesh's own texture lookup (its UV convention, not pyfaid's) gives back the vertex albedo
    from trimesh.visual.color import uv_to_interpolated_color

    looked_up = uv_to_interpolated_color(uv, _material_image(mesh))[:, :3].astype(np.float64)
    err = np.abs(looked_up - bake.to_uint8(rec.albedo)[vertex_of]).mean(1)
    assert err.mean() < 1.5 and np.percentile(err, 95) < 2.0, (err.mean(), np.percentile(err, 95))
    scale = export.GLTF_SCALE if fmt == "glb" else 1.0
    np.testing.assert_allclose(np.asarray(mesh.vertices) / scale, rec.vertices.numpy()[vertex_of], atol=1e-5)
    ref = rec.render()
    m = mask * ref["mask"]
    assert m.sum() > 0.9 * ref["mask"].sum()
    assert float(psnr(image, ref["image"], m)[0]) >= 30.0


def test_glb_reads_with_a_second_gltf_reader(tiny_rec, tmp_path):
    import pygltflib
    from PIL import Image

    path = tmp_path / "face.glb"
    tiny_rec.save(path, texture_size=256)
    g = pygltflib.GLTF2().load(str(path))
    prim = g.meshes[0].primitives[0]
    blob = g.binary_blob()

    def accessor(i):
        a = g.accessors[i]
        view = g.bufferViews[a.bufferView]
        width = {"VEC2": 2, "VEC3": 3, "SCALAR": 1}[a.type]
        dtype = {5126: np.float32, 5125: np.uint32}[a.componentType]
        start = (view.byteOffset or 0) + (a.byteOffset or 0)
        return np.frombuffer(blob, dtype, a.count * width, start).reshape(a.count, width)

    pos = accessor(prim.attributes.POSITION)
    uv = accessor(prim.attributes.TEXCOORD_0)
    nrm = accessor(prim.attributes.NORMAL)
    idx = accessor(prim.indices)
    vertex_of, _, faces = uvlib.split_seams(tiny_rec.faces.numpy(), tiny_rec.face_model.uv_layout()[1],
                                            tiny_rec.face_model.num_vertices)
    assert len(pos) == len(uv) == len(nrm) == len(vertex_of) > tiny_rec.face_model.num_vertices  # seam copies
    np.testing.assert_allclose(pos, tiny_rec.vertices.numpy()[vertex_of] * export.GLTF_SCALE, atol=1e-6)
    np.testing.assert_array_equal(idx.reshape(-1, 3), faces)
    assert uv.min() >= 0 and uv.max() <= 1  # glTF's v runs down: trimesh flipped it, still in [0, 1]
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-5)
    material = g.materials[prim.material]
    texture = g.textures[material.pbrMetallicRoughness.baseColorTexture.index]
    image = g.images[texture.source]
    assert image.mimeType == "image/png"
    view = g.bufferViews[image.bufferView]
    png = Image.open(io.BytesIO(blob[view.byteOffset or 0:(view.byteOffset or 0) + view.byteLength]))
    assert png.size == (256, 256)


def test_vertex_colour_exports_and_npz(tiny_rec, tmp_path):
    import trimesh

    want = bake.to_uint8(tiny_rec.albedo)
    for name, kw in (("a.ply", {}), ("b.obj", {"vertex_colors": True}), ("c.glb", {"vertex_colors": True})):
        files = tiny_rec.save(tmp_path / name, **kw)
        assert files == [str(tmp_path / name)]
        back = trimesh.load(str(tmp_path / name), process=False, force="mesh")
        assert len(back.vertices) == tiny_rec.face_model.num_vertices
        got = np.asarray(back.visual.vertex_colors)[:, :3]
        np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)
    assert not (tmp_path / "b.mtl").exists()
    tiny_rec.save(tmp_path / "d.npz")
    z = np.load(tmp_path / "d.npz")
    assert z["vertices_model"].shape == tuple(tiny_rec.vertices.shape)
    assert sorted(os.listdir(tmp_path)) == ["a.ply", "b.obj", "c.glb", "d.npz"]  # no temporary files


def test_generated_layout_exports_without_model_uvs(tiny_rec, tmp_path):
    import trimesh

    assert tiny_rec.face_model.uv is None
    tiny_rec.save(tmp_path / "s.obj", texture_size=128)
    back = trimesh.load(str(tmp_path / "s.obj"), process=False, force="mesh")
    assert len(back.vertices) > tiny_rec.face_model.num_vertices  # the sphere's back seam is split
    assert _material_image(back).size == (128, 128)


def test_bad_export_inputs_name_the_problem(tiny_rec, tmp_path):
    with pytest.raises(ValueError, match=r"face\.fbx.*'\.fbx'.*\.obj, \.glb, \.ply, \.npz"):
        tiny_rec.save(tmp_path / "face.fbx")
    with pytest.raises(ValueError, match="no extension"):
        tiny_rec.save(tmp_path / "face")
    with pytest.raises(FileNotFoundError, match="missing"):
        tiny_rec.save(tmp_path / "missing" / "face.obj")
    (tmp_path / "dir.obj").mkdir()
    with pytest.raises(IsADirectoryError, match="dir.obj"):
        tiny_rec.save(tmp_path / "dir.obj")
    with pytest.raises(ValueError, match="texture kind.*'shiny'"):
        tiny_rec.save(tmp_path / "face.obj", texture="shiny")
    with pytest.raises(ValueError, match="texture size"):
        tiny_rec.texture("albedo", 10)
    with pytest.raises(ValueError, match="colors must be"):
        tiny_rec.save(tmp_path / "face.ply", colors="rainbow")
    with pytest.raises(R.ImageReadError, match="nothere.jpg"):
        rec = _reconstruction(tiny_rec.face_model)
        rec.transform = np.array([[1.0, 0, 0], [0, 1.0, 0]])
        rec.texture("photo", 64, photo=str(tmp_path / "nothere.jpg"))
    # a failed export leaves an existing file alone
    (tmp_path / "keep.obj").write_text("old")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        tiny_rec.save(tmp_path / "keep.obj", texture=np.zeros((8, 8), np.uint8))
    assert (tmp_path / "keep.obj").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["dir.obj", "keep.obj"]


# ----------------------------------------------------------------------------- turntable
def test_turntable_gif_and_grid(tiny_rec, tmp_path):
    from PIL import Image, ImageSequence

    tex = tiny_rec.texture("albedo", 128)
    frames = tiny_rec.turntable(8, tmp_path / "t.gif", texture=tex, image_size=96)
    assert len(frames) == 8 and frames[0].shape == (96, 96, 3) and frames[0].dtype == np.uint8
    gif = Image.open(tmp_path / "t.gif")
    assert gif.n_frames == 8 and gif.size == (96, 96) and gif.info.get("loop") == 0
    assert not np.array_equal(frames[2], frames[6])  # turned one way, then the other
    np.testing.assert_array_equal(np.asarray(ImageSequence.Iterator(gif)[0].convert("RGB")).shape, (96, 96, 3))
    # frame 0 faces front: the textured render at yaw 0
    ref = turntable.render_textured(tiny_rec, tex, angles=torch.zeros(3), image_size=96)["image"]
    np.testing.assert_array_equal(frames[0], bake.to_uint8(ref.permute(1, 2, 0)))
    tiny_rec.turntable(5, tmp_path / "t.png", texture=tex, image_size=32)
    assert Image.open(tmp_path / "t.png").size == (5 * 32, 32)
    with pytest.raises(ValueError, match=r"\.gif.*\.png"):
        tiny_rec.turntable(3, tmp_path / "t.mp4", texture=tex)
    with pytest.raises(ValueError, match="at least one frame"):
        tiny_rec.turntable(0, texture=tex)


# ----------------------------------------------------------------------------- command line
def test_write_outputs_default_and_chosen_exports(tiny_rec, tmp_path):
    from pyfaid.reconstruct.cli import write_outputs

    photo = (tiny_rec.input.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    write_outputs(tiny_rec, photo, tmp_path, "a", texture_size=128)
    assert sorted(os.listdir(tmp_path)) == ["a.glb", "a.json", "a.mtl", "a.npz", "a.obj", "a.ply", "a.png",
                                            "a_overlay.jpg", "a_texture.png"]
    write_outputs(tiny_rec, photo, tmp_path, "b", exports=("glb",), turntable=True, texture="albedo", texture_size=64)
    assert sorted(f for f in os.listdir(tmp_path) if f.startswith("b")) == [
        "b.glb", "b.png", "b_overlay.jpg", "b_turntable.gif"]


def test_cli_flags(tmp_path, capsys):
    from skimage import data

    import cv2

    default_face_model("cpu")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    code = R.main([str(photo), "--out", str(out), "--fit", "2", "--no-id-loss", "--export", "glb,npz",
                   "--turntable", "--texture-size", "256"])
    assert code == 0
    assert sorted(os.listdir(out)) == ["astronaut.glb", "astronaut.npz", "astronaut.png", "astronaut_overlay.jpg",
                                       "astronaut_turntable.gif"]
    import trimesh

    mesh = trimesh.load(str(out / "astronaut.glb"), process=False, force="mesh")
    assert _material_image(mesh).size == (256, 256)
    for bad, msg in ((["--export", "obj,fbx"], "fbx"), (["--texture-size", "9"], "texture size"),
                     (["--texture", "shiny"], "shiny")):
        with pytest.raises(SystemExit) as exc:
            R.main([str(photo), "--out", str(out), "--fit", "1", *bad])
        assert exc.value.code == 2
        assert msg in capsys.readouterr().err
