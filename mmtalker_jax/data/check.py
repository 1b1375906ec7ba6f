"""The dataset doctor: `python -m mmtalker_jax.data.check ROOT [--config configs/x.py]`.

Validates a FaceFormer-layout corpus and prints either a summary or every
problem it finds, one line each starting with the file at fault. Exits 1 when
there are problems. Without --config, the corpus's manifest.json (SynthTalk)
or, failing that, the files themselves describe it (one split, 'all').
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Iterable

import ml_collections
import numpy as np

from mmtalker_jax.configlib import load_config
from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax import safe_pickle
from mmtalker_jax.data.corpus import check_mesh_size, in_split, pair_files, read_vertices
from mmtalker_jax.errors import InputError, exit_on_input_error
from mmtalker_jax.mesh.assets import load_mesh_assets


DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs", "default.py")


def infer_data_config(root: str, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A data config read off the corpus itself (manifest.json if present).

  Args:
    root: the corpus folder.
    base: a config's `data` section; what the corpus does not say (frame
      stride, rates, tolerances) is taken from it.
  """
  if not os.path.isdir(root):
    raise InputError(root, "corpus folder not found")
  cfg = base.copy_and_resolve_references()
  cfg.root = root
  manifest_path = os.path.join(root, "manifest.json")
  if os.path.isfile(manifest_path):
    try:
      with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
      cfg.fps = float(manifest["fps"])
      cfg.features.sample_rate = int(manifest["sample_rate"])
      cfg.template_mesh = manifest["template"]
      with open(os.path.join(root, manifest["regions"]), encoding="utf-8") as f:
        names = sorted(json.load(f))
      cfg.regions = {n: [f"{manifest['regions']}:{n}"] for n in names}
      cfg.splits = manifest["splits"]
      return cfg
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise InputError(manifest_path, f"unreadable manifest ({e}); pass --config") from None
  meshes = sorted(glob.glob(os.path.join(root, "*.obj")) + glob.glob(os.path.join(root, "*.ply")))
  if not meshes:
    raise InputError(root, "no template .obj/.ply found; pass --config naming it")
  cfg.template_mesh = os.path.basename(meshes[0])
  cfg.regions = {}
  cfg.splits = {"all": {"subjects": [], "sentences": None}}
  return cfg


class Doctor:
  """Collects every problem of a corpus instead of stopping at the first."""

  def __init__(self, cfg):
    self.cfg = cfg
    self.root = os.path.expanduser(cfg.root)
    self.problems: list[InputError] = []

  def _try(self, fn, *args):
    try:
      return fn(*args)
    except InputError as e:
      self.problems.append(e)
      return None

  def run(self) -> dict:
    cfg, root = self.cfg, self.root
    if not os.path.isdir(root):
      raise InputError(root, "corpus folder not found")
    templates_path = os.path.join(root, cfg.templates)
    templates = self._try(safe_pickle.load_templates, templates_path) or {}
    mesh_path = os.path.join(root, cfg.template_mesh)
    assets = self._try(load_mesh_assets, mesh_path, dict(cfg.regions), root)
    if assets is not None:
      try:
        check_mesh_size(assets, cfg, mesh_path)
      except InputError as e:
        # Every other file is sized against the template: this one line says what is wrong.
        self.problems.append(e)
        return {}
    if assets is not None:
      num_v = assets.num_vertices
    elif templates:
      num_v = int(np.median([len(t) for t in templates.values()]))
    else:
      num_v = None
    for subject, tmpl in templates.items():
      if num_v is not None and len(tmpl) != num_v:
        self.problems.append(InputError(
            templates_path, f"template of {subject!r} has {len(tmpl)} vertices, expected {num_v}"))

    sequences, problems = pair_files(root)
    self.problems += problems
    for subject in sorted({s.subject for s in sequences} - set(templates)):
      if templates or not self.problems:
        self.problems.append(InputError(
            templates_path, f"subject {subject!r} has sequences but no template"))

    fps = float(cfg.fps)
    sr = int(cfg.features.sample_rate)
    tolerance = float(cfg.max_length_mismatch_seconds)
    seconds = {}
    for seq in sequences:
      verts = self._try(read_vertices, seq.npy, num_v, int(cfg.frame_stride)) if num_v else None
      wav = self._try(audio_lib.load_audio, seq.wav, sr)
      if verts is None or wav is None:
        continue
      audio_s, mesh_s = len(wav) / sr, len(verts) / fps
      if abs(audio_s - mesh_s) > tolerance:
        self.problems.append(InputError(
            seq.wav, f"audio lasts {audio_s:.2f} s but its {len(verts)} mesh frames at "
            f"{fps:g} fps last {mesh_s:.2f} s (check fps and frame_stride)"))
      seconds[seq.name] = mesh_s

    split_counts = {}
    for name, spec in dict(cfg.splits).items():
      spec = dict(spec)
      if not spec.get("subjects"):
        chosen = sequences
      else:
        chosen = [s for s in sequences if in_split(s, spec)]
        for subject in spec["subjects"]:
          if not any(s.subject == subject for s in chosen):
            self.problems.append(InputError(
                root, f"split {name!r}: subject {subject!r} has no sequences in range "
                f"{spec.get('sentences')}"))
      split_counts[name] = (len(chosen), sum(seconds.get(s.name, 0.0) for s in chosen) / 60)
    return {
        "root": root, "subjects": sorted({s.subject for s in sequences}),
        "sequences": len(sequences), "minutes": sum(seconds.values()) / 60,
        "vertices": num_v, "faces": assets.num_faces if assets else None,
        "fps": fps, "splits": split_counts,
        "regions": {k: len(v) for k, v in assets.regions.items()} if assets else {},
    }


def format_summary(s: dict) -> Iterable[str]:
  yield f"corpus     {s['root']}"
  yield f"subjects   {len(s['subjects'])}: {', '.join(s['subjects'])}"
  yield f"sequences  {s['sequences']}, {s['minutes']:.1f} min at {s['fps']:g} fps"
  yield f"mesh       {s['vertices']} vertices, {s['faces']} faces"
  yield "regions    " + (", ".join(f"{k} {v}" for k, v in s["regions"].items()) or "none")
  for name, (n, minutes) in s["splits"].items():
    yield f"split      {name:<7} {n:4d} sequences, {minutes:5.1f} min"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Validates a FaceFormer-layout corpus.")
  parser.add_argument("root", help="corpus folder")
  parser.add_argument("--config", help="config whose data section describes the corpus "
                      "(default: read it off the corpus, the rest from configs/default.py)")
  args = parser.parse_args(argv)

  def run() -> int:
    if args.config:
      cfg = load_config(args.config).data
      cfg.root = args.root
    else:
      cfg = infer_data_config(args.root, load_config(DEFAULT_CONFIG).data)
    doctor = Doctor(cfg)
    summary = doctor.run()
    if doctor.problems:
      for p in doctor.problems:
        print(p)
      print(f"{len(doctor.problems)} problem(s) found in {args.root}", file=sys.stderr)
      return 1
    for line in format_summary(summary):
      print(line)
    print("ok: no problems found")
    return 0

  return exit_on_input_error(run)


if __name__ == "__main__":
  sys.exit(main())
