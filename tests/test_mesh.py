"""Mesh assets: OBJ/UV round trips, parameterization, the jraph graph, regions."""

import json
import pickle

import numpy as np
import pytest
import trimesh

from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh import io as mesh_io
from mmtalker_jax.mesh.assets import build_mesh_assets, load_mesh_assets
from mmtalker_jax.mesh.parameterize import NotParameterizable, disk_parameterization
from mmtalker_jax.mesh.regions import load_regions
from tests.meshes import disk_mesh, seamed_atlas


def signed_areas(uv, faces):
  e1, e2 = uv[faces[:, 1]] - uv[faces[:, 0]], uv[faces[:, 2]] - uv[faces[:, 0]]
  return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


@pytest.mark.parametrize("num_vertices", [5023, 23370])
def test_assets_at_flame_and_biwi_size(num_vertices):
  verts, faces = disk_mesh(num_vertices)
  assets = build_mesh_assets(verts, faces)
  assert assets.num_vertices == num_vertices
  assert assets.vertex_uv.shape == (num_vertices, 2)
  assert assets.vertex_uv.min() >= 0 and assets.vertex_uv.max() <= 1
  # Without a file's UVs there is no seam: every corner holds its vertex's UV.
  np.testing.assert_array_equal(assets.face_uv, assets.vertex_uv[faces])
  # Tutte's embedding never flips a triangle: all signed areas share a sign.
  s = signed_areas(assets.vertex_uv.astype(np.float64), faces)
  assert (s > 0).all() or (s < 0).all()
  # Disk: V - E + F = 1, and the graph holds both directions of every edge.
  g = assets.graph
  num_edges = len(g.senders) // 2
  assert num_vertices - num_edges + len(faces) == 1
  assert int(g.n_node[0]) == num_vertices and int(g.n_edge[0]) == 2 * num_edges
  pairs = set(zip(g.senders.tolist(), g.receivers.tolist()))
  assert all((r, s) in pairs for s, r in list(pairs)[:1000])
  assert assets.face_areas.shape == (len(faces),)
  np.testing.assert_allclose(assets.face_areas.sum(),
                             trimesh.Trimesh(verts, faces, process=False).area, rtol=1e-4)


def test_obj_round_trip_keeps_order_and_uvs(tmp_path):
  verts, faces = disk_mesh(300)
  uv = np.random.default_rng(1).uniform(0, 1, (300, 2)).astype(np.float32)
  path = tmp_path / "t.obj"
  mesh_io.write_obj(path, verts, faces, uv[faces])
  raw = mesh_io.read_mesh(path)
  np.testing.assert_allclose(raw.vertices, verts, atol=1e-6)
  np.testing.assert_array_equal(raw.faces, faces)
  np.testing.assert_allclose(raw.face_uv, uv[faces], atol=1e-6)
  # Without seams, texture coordinate i is vertex i's, so other readers agree.
  assert path.read_text().count("\nvt ") == 300
  other = trimesh.load(path, process=False, maintain_order=True)
  np.testing.assert_allclose(other.visual.uv, uv, atol=1e-6)
  # The OBJ's UVs are used as they are, not recomputed.
  assets = load_mesh_assets(path)
  np.testing.assert_allclose(assets.vertex_uv, uv, atol=1e-6)


def flame_like_obj(path, num_vertices=400, seed=0):
  """An OBJ written the way FLAME's is: a two-island atlas, more vt than v, and
  vt numbered apart from v (shuffled).

  Returns (vertices, faces, face_uv, island) as the file states them.
  """
  rng = np.random.default_rng(seed)
  verts, faces = disk_mesh(num_vertices)
  corner, island = seamed_atlas(verts, faces)
  # One vt per distinct (vertex, island) pair, in a shuffled order.
  keys = np.stack([faces, np.broadcast_to(island[:, None], faces.shape)], -1).reshape(-1, 2)
  uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
  order = rng.permutation(len(uniq))
  vt_index = np.argsort(order)[inverse.reshape(-1)].reshape(-1, 3)
  vt = np.zeros((len(uniq), 2))
  vt[vt_index.reshape(-1)] = corner.reshape(-1, 2)
  lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
  lines += [f"vt {u:.6f} {v:.6f}" for u, v in vt]
  lines += ["f " + " ".join(f"{a + 1}/{b + 1}" for a, b in zip(f, t))
            for f, t in zip(faces, vt_index)]
  path.write_text("\n".join(lines) + "\n")
  return verts, faces, corner, island


def test_flame_like_atlas_with_seams_keeps_every_corner_uv(tmp_path):
  path = tmp_path / "flame_like.obj"
  verts, faces, corner, island = flame_like_obj(path)
  text = path.read_text()
  assert text.count("\nvt ") > len(verts)  # seam vertices carry two UVs
  raw = mesh_io.read_mesh(path)
  np.testing.assert_array_equal(raw.faces, faces)
  np.testing.assert_allclose(raw.face_uv, corner, atol=1e-6)
  # One UV per vertex, as other loaders keep, is wrong on faces along the seam.
  other = trimesh.load(path, process=False, maintain_order=True)
  wrong = np.abs(np.asarray(other.visual.uv)[faces] - corner).max(axis=(1, 2)) > 1e-3
  assert wrong.any()
  # Assets keep the corners; a seam vertex's own UV is that of its first face.
  assets = load_mesh_assets(path)
  np.testing.assert_allclose(assets.face_uv, corner, atol=1e-6)
  face_ids, bary = assets.vertex_points()
  first = np.array([np.flatnonzero((faces == v).any(1))[0] for v in range(len(verts))])
  np.testing.assert_array_equal(face_ids, first)
  np.testing.assert_allclose(assets.vertex_uv, np.einsum("vk,vkd->vd", bary, corner[face_ids]),
                             atol=1e-6)
  # Our writer round-trips the seams, and the fingerprint with them.
  out = tmp_path / "again.obj"
  mesh_io.write_obj(out, raw.vertices, raw.faces, raw.face_uv)
  again = load_mesh_assets(out)
  np.testing.assert_allclose(again.face_uv, corner, atol=1e-6)
  assert again.fingerprint == assets.fingerprint
  moved = corner.copy()
  moved[island] += 0.01
  assert build_mesh_assets(verts, faces, moved).fingerprint != assets.fingerprint


def test_obj_faces_that_mix_uv_and_no_uv_are_refused(tmp_path):
  path = tmp_path / "mixed.obj"
  path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nvt 0 0\nvt 1 0\nvt 0 1\n"
                  "f 1/1 2/2 3/3\nf 2 4 3\n")
  with pytest.raises(InputError, match="mixed.obj: some faces have texture coordinates"):
    mesh_io.read_mesh(path)
  path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n")
  with pytest.raises(InputError, match=r"mixed.obj: line 4: index 7 out of range"):
    mesh_io.read_mesh(path)


def test_ply_without_uvs_is_parameterized(tmp_path):
  verts, faces = disk_mesh(500)
  path = tmp_path / "t.ply"
  trimesh.Trimesh(verts, faces, process=False).export(path)
  assets = load_mesh_assets(path)
  assert assets.vertex_uv.shape == (500, 2)
  centre_dist = np.linalg.norm(assets.vertex_uv - 0.5, axis=1)
  assert centre_dist.max() == pytest.approx(0.5, abs=1e-5)  # boundary on the circle


def test_mesh_with_a_hole_is_parameterized():
  verts, faces = disk_mesh(2000)
  centroid = verts[faces][:, :, :2].mean(1)
  keep = np.linalg.norm(centroid - [0.3, 0.0], axis=1) > 0.12  # an eye hole
  used, faces = np.unique(faces[keep], return_inverse=True)
  faces = faces.reshape(-1, 3)
  uv = disk_parameterization(verts[used], faces)
  assert np.isfinite(uv).all() and uv.shape == (len(used), 2)


def test_closed_or_broken_meshes_are_refused(tmp_path):
  sphere = trimesh.creation.icosphere(subdivisions=2)
  with pytest.raises(NotParameterizable, match="closed"):
    disk_parameterization(sphere.vertices, sphere.faces)
  verts, faces = disk_mesh(200)
  two = np.concatenate([verts, verts + 5]), np.concatenate([faces, faces + 200])
  with pytest.raises(NotParameterizable, match="2 separate pieces"):
    disk_parameterization(*two)
  path = tmp_path / "sphere.ply"
  sphere.export(path)
  with pytest.raises(InputError, match="sphere.ply: mesh has no UVs and cannot be parameterized"):
    load_mesh_assets(path)


def test_vertex_points_are_one_hot_barycentrics_of_an_incident_face():
  verts, faces = disk_mesh(400)
  assets = build_mesh_assets(verts, faces)
  face_ids, bary = assets.vertex_points()
  rebuilt = np.einsum("vk,vkd->vd", bary, verts[faces[face_ids]])
  np.testing.assert_allclose(rebuilt, verts, atol=1e-6)
  assert set(np.unique(bary)) == {0.0, 1.0}


def test_region_formats_biwi_flame_and_json(tmp_path):
  (tmp_path / "regions").mkdir()
  (tmp_path / "regions" / "lve.txt").write_text("3, 1,2\n,5")
  masks = {"lips": np.array([4, 0]), "eye_region": np.array([7]), "forehead": np.array([8, 7])}
  (tmp_path / "FLAME_masks.pkl").write_bytes(pickle.dumps(masks, protocol=2))
  (tmp_path / "r.json").write_text(json.dumps({"brow": [9]}))
  spec = {"lips": ["regions/lve.txt"], "flame_lips": ["FLAME_masks.pkl:lips"],
          "upper": ["FLAME_masks.pkl:forehead", "FLAME_masks.pkl:eye_region"],
          "brow": "r.json:brow"}
  regions = load_regions(tmp_path, spec, num_vertices=10)
  assert regions["lips"].tolist() == [1, 2, 3, 5]
  assert regions["flame_lips"].tolist() == [0, 4]
  assert regions["upper"].tolist() == [7, 8]
  assert regions["brow"].tolist() == [9]


def test_region_index_out_of_range_names_the_file(tmp_path):
  (tmp_path / "fdd.txt").write_text("1,2,99")
  with pytest.raises(InputError, match=r"fdd.txt: region 'upper' index 99 is out of range"):
    load_regions(tmp_path, {"upper": ["fdd.txt"]}, num_vertices=50)


def test_written_objs_keep_the_template_files_own_vt_order(tmp_path):
  """A template whose vt are in no particular order (FLAME's 5118 are not vertex
  order) is written back, per frame and in the run folder, with the same vt
  lines and the same vt at every corner."""
  from mmtalker_jax.inference.export import write_obj_frames
  from mmtalker_jax.training.run_folder import load_mesh, save_mesh

  verts, faces = disk_mesh(120)
  face_uv, _ = seamed_atlas(verts, faces)
  path = tmp_path / "template.obj"
  mesh_io.write_obj(path, verts, faces, face_uv)
  lines = path.read_text().splitlines()
  vt = [line for line in lines if line.startswith("vt ")]
  order = np.random.default_rng(0).permutation(len(vt))  # file line -> new position
  where = {old: new for new, old in enumerate(order)}
  shuffled = [vt[i] for i in order]

  def renumber(line):
    refs = [r.split("/") for r in line.split()[1:]]
    return "f " + " ".join(f"{v}/{where[int(t) - 1] + 1}" for v, t in refs)

  faces_txt = [renumber(line) for line in lines if line.startswith("f ")]
  path.write_text("\n".join([line for line in lines if line.startswith("v ")] + shuffled
                            + faces_txt) + "\n")
  assets = load_mesh_assets(path)
  np.testing.assert_allclose(assets.face_uv, face_uv, atol=1e-6)

  def written(obj):
    text = obj.read_text().splitlines()
    return ([line for line in text if line.startswith("vt ")],
            [" ".join(r.split("/")[1] for r in line.split()[1:]) for line in text
             if line.startswith("f ")])

  expected = (shuffled, [" ".join(r.split("/")[1] for r in line.split()[1:])
                         for line in faces_txt])
  write_obj_frames(str(tmp_path / "frames"), verts[None] + 0.01, assets.faces, assets.face_uv,
                   assets.uv_layout)
  assert written(tmp_path / "frames" / "frame_000000.obj") == expected
  save_mesh(str(tmp_path / "run"), assets, {"S": assets.vertices})
  assert written(tmp_path / "run" / "mesh" / "template.obj") == expected
  again, _ = load_mesh(str(tmp_path / "run"))
  assert again.fingerprint == assets.fingerprint
