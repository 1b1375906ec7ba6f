"""SynthTalk: writes the built-in corpus in the FaceFormer layout.

<out>/wav/<subject>_<sentence>.wav           16 kHz mono PCM-16
<out>/vertices_npy/<subject>_<sentence>.npy  [T, V*3] float32
<out>/templates.pkl                          {subject: [V,3] float32}
<out>/template.obj                           topology with a seamed UV atlas (mean face)
<out>/regions.json                           {region: [vertex ids]}
<out>/manifest.json                          fps, sample rate, subjects, splits

Every random choice comes from a generator seeded by (seed, purpose, ids), so
the same seed gives byte-identical files, in any order of generation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import pickle
import shutil
from concurrent import futures

import numpy as np
import soundfile as sf

from mmtalker_jax import fileio
from mmtalker_jax.data.synthetic import face, motion, phones, speech
from mmtalker_jax.data.synthetic.spec import SynthSpec
from mmtalker_jax.mesh import io as mesh_io

_SENTENCE, _SUBJECT, _TAKE = 1, 2, 3  # seed streams


def _subject_params(spec: SynthSpec, s: int):
  rng = np.random.default_rng([spec.seed, _SUBJECT, s])
  shape = face.random_shape(rng)
  style = motion.random_style(rng)
  voice = speech.Voice(f0=float(rng.uniform(95, 230)),
                       formant_scale=float(rng.uniform(0.9, 1.12)),
                       breath=float(rng.uniform(0.0, 0.3)))
  rate = float(rng.uniform(0.88, 1.12))
  return shape, style, voice, rate


def _sentence(spec: SynthSpec, k: int) -> phones.Sentence:
  rng = np.random.default_rng([spec.seed, _SENTENCE, k])
  return phones.make_sentence(rng, target_seconds=rng.uniform(2.4, 5.0))


def take_timeline(spec: SynthSpec, s: int, k: int
                  ) -> tuple[phones.Timeline, np.random.Generator]:
  """When subject s (0-based, train then unseen) says sentence k (1-based), and
  the take's generator, drawn past the timeline (rendering goes on with it)."""
  rate = _subject_params(spec, s)[3]
  rng = np.random.default_rng([spec.seed, _TAKE, s, k])
  timeline = phones.make_timeline(_sentence(spec, k), rng, rate,
                                  spec.min_seconds, spec.max_seconds)
  return timeline, rng


def _render_take(spec: SynthSpec, uv: np.ndarray, s: int, k: int):
  """(wav bytes, npy bytes) of subject s saying sentence k."""
  shape, style, voice, rate = _subject_params(spec, s)
  timeline, rng = take_timeline(spec, s, k)
  num_frames = int(timeline.duration * spec.fps)
  num_samples = int(round(num_frames * spec.sample_rate / spec.fps))
  audio = speech.synthesize(timeline, voice, spec.sample_rate, num_samples, rng)
  coeffs = motion.articulation(timeline, num_frames, spec.fps)
  verts = motion.animate(face.face_positions(uv, shape),
                         face.motion_fields(uv, shape), coeffs, style)
  wav = io.BytesIO()
  sf.write(wav, audio, spec.sample_rate, subtype="PCM_16", format="WAV")
  npy = io.BytesIO()
  np.save(npy, verts.reshape(num_frames, -1))
  return wav.getvalue(), npy.getvalue()


def sequence_name(subject: str, sentence: int) -> str:
  return f"{subject}_sentence{sentence:02d}"


def generate(out: str | os.PathLike, spec: SynthSpec = SynthSpec(),
             workers: int | None = None) -> dict:
  """Writes the corpus into `out`.

  A new folder appears only when whole: it is written as `<out>.partial` and
  renamed at the end, so an interrupted run leaves nothing that a later run
  could take for a corpus. An existing folder is written in place (its files
  replaced).

  Args:
    out: corpus root.
    spec: sizes and seed.
    workers: processes for rendering (default: all cores).

  Returns:
    The manifest written to `out/manifest.json`.
  """
  out = os.path.normpath(os.fspath(out))
  if os.path.isdir(out):
    return _write(out, spec, workers)
  partial = out + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  manifest = _write(partial, spec, workers)
  os.replace(partial, out)
  return manifest


def _write(out: str, spec: SynthSpec, workers: int | None) -> dict:
  """generate's work, into `out` (created if missing)."""
  uv, faces = face.make_topology(spec.vertex_spacing)
  subjects = spec.train_subjects + spec.unseen_subjects
  templates = {name: face.face_positions(uv, _subject_params(spec, s)[0])
               for s, name in enumerate(subjects)}
  os.makedirs(os.path.join(out, "wav"), exist_ok=True)
  os.makedirs(os.path.join(out, "vertices_npy"), exist_ok=True)

  jobs = [(s, k) for s in range(len(subjects)) for k in range(1, spec.num_sentences + 1)]
  workers = workers or os.cpu_count() or 1

  def write(job, result):
    s, k = job
    name = sequence_name(subjects[s], k)
    fileio.write_bytes(os.path.join(out, "wav", name + ".wav"), result[0])
    fileio.write_bytes(os.path.join(out, "vertices_npy", name + ".npy"), result[1])

  if workers > 1:
    # spawn, not fork: the caller may already run JAX's threads.
    ctx = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      pending = {job: pool.submit(_render_take, spec, uv, *job) for job in jobs}
      for job in jobs:
        write(job, pending.pop(job).result())
  else:
    for job in jobs:
      write(job, _render_take(spec, uv, *job))

  mean = face.face_positions(uv, face.mean_shape())
  mesh_io.write_obj(os.path.join(out, "template.obj"), mean, faces, face.uv_atlas(uv, faces))
  fileio.write_bytes(os.path.join(out, "templates.pkl"),
                     pickle.dumps(templates, protocol=4))
  regions = {k: v.tolist() for k, v in face.regions(uv).items()}
  fileio.write_text(os.path.join(out, "regions.json"), json.dumps(regions) + "\n")
  manifest = {
      "name": "SynthTalk",
      "spec": dataclasses.asdict(spec),
      "fps": spec.fps,
      "sample_rate": spec.sample_rate,
      "num_vertices": int(len(uv)),
      "num_faces": int(len(faces)),
      "template": "template.obj",
      "regions": "regions.json",
      "subjects": {"train": spec.train_subjects, "unseen": spec.unseen_subjects},
      "splits": spec.splits(),
  }
  fileio.write_text(os.path.join(out, "manifest.json"),
                    json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  return manifest


def tree_digest(root: str | os.PathLike) -> str:
  """SHA-256 over every file's relative path and bytes, in sorted order."""
  h = hashlib.sha256()
  for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(folder, name)
      h.update(os.path.relpath(path, root).encode())
      with open(path, "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
  return h.hexdigest()


def spec_from_config(data_cfg) -> SynthSpec:
  """The SynthSpec a config's `data` section describes."""
  s = data_cfg.synthetic
  return SynthSpec(seed=int(s.seed), num_train_subjects=int(s.num_train_subjects),
                   num_unseen_subjects=int(s.num_unseen_subjects),
                   num_sentences=int(s.num_sentences), min_seconds=float(s.min_seconds),
                   max_seconds=float(s.max_seconds), fps=float(data_cfg.fps),
                   sample_rate=int(data_cfg.features.sample_rate),
                   vertex_spacing=float(s.vertex_spacing))
