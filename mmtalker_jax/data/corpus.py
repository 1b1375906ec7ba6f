"""A corpus in the FaceFormer layout, described by the data config alone.

<root>/wav/<subject>_<sentence>.wav, <root>/vertices_npy/<subject>_<sentence>.npy
[T_src, V*3], <root>/templates.pkl {subject: [V,3]}, a topology file and region
files. Subject = stem without its last '_' part; sentence = the last part, whose
trailing integer selects it into splits.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Iterator, Mapping

import numpy as np

from mmtalker_jax.data import audio as audio_lib
from mmtalker_jax import safe_pickle
from mmtalker_jax.errors import InputError
from mmtalker_jax.mesh.assets import MeshAssets, load_mesh_assets

SPLITS = ("train", "val", "test", "test_b")


@dataclasses.dataclass(frozen=True)
class Sequence:
  """One recording: a wav and its vertex file."""
  name: str
  subject: str
  sentence: str
  wav: str
  npy: str

  @property
  def number(self) -> int | None:
    """The sentence's trailing integer ('sentence07' -> 7, 'e37' -> 37)."""
    m = re.search(r"(\d+)$", self.sentence)
    return int(m.group(1)) if m else None


def parse_stem(stem: str) -> tuple[str, str]:
  """'FaceTalk_170728_03272_TA_sentence01' -> ('FaceTalk_170728_03272_TA', 'sentence01')."""
  subject, sep, sentence = stem.rpartition("_")
  if not sep or not subject or not sentence:
    raise ValueError(f"{stem!r} is not <subject>_<sentence>")
  return subject, sentence


def pair_files(root: str) -> tuple[list[Sequence], list[InputError]]:
  """Pairs wav/X.wav with vertices_npy/X.npy.

  Returns:
    The paired sequences sorted by name, and one error per unpaired or
    misnamed file.
  """
  problems: list[InputError] = []
  found: dict[str, dict[str, str]] = {"wav": {}, "vertices_npy": {}}
  for folder, ext in (("wav", ".wav"), ("vertices_npy", ".npy")):
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
      problems.append(InputError(path, "folder missing"))
      continue
    for name in sorted(os.listdir(path)):
      if name.startswith(".") or not name.endswith(ext):
        continue
      found[folder][name[: -len(ext)]] = os.path.join(path, name)
  sequences = []
  for stem in sorted(set(found["wav"]) | set(found["vertices_npy"])):
    wav, npy = found["wav"].get(stem), found["vertices_npy"].get(stem)
    if wav is None:
      problems.append(InputError(npy, f"has no audio: expected wav/{stem}.wav"))
      continue
    if npy is None:
      problems.append(InputError(wav, f"has no vertices: expected vertices_npy/{stem}.npy"))
      continue
    try:
      subject, sentence = parse_stem(stem)
    except ValueError as e:
      problems.append(InputError(wav, str(e)))
      continue
    sequences.append(Sequence(stem, subject, sentence, wav, npy))
  return sequences, problems


def check_mesh_size(assets: MeshAssets, cfg, path: str) -> None:
  """The template must have the size its config states (data.num_vertices/num_faces).

  Raises:
    InputError: naming the mesh file, both sizes and the config field.
  """
  for field, have in (("num_vertices", assets.num_vertices), ("num_faces", assets.num_faces)):
    want = cfg.get(field)
    if want is not None and int(want) != have:
      noun = field.removeprefix("num_")
      raise InputError(path, f"has {have} {noun}, but the config expects {int(want)} "
                       f"(data.{field}): a different template than the config describes")


def in_split(seq: Sequence, split: Mapping[str, Any]) -> bool:
  if seq.subject not in list(split["subjects"]):
    return False
  sentences = split.get("sentences")
  if not sentences:
    return True
  lo, hi = sentences
  return seq.number is not None and lo <= seq.number <= hi


def open_vertices(path: str, num_vertices: int) -> np.ndarray:
  """Memory-maps a vertex file [T_src, V*3] after checking its shape.

  Raises:
    InputError: naming `path`, for an unreadable file, a width that is not
      3 x `num_vertices`, or no frames.
  """
  try:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    raise InputError(path, f"not a readable .npy file ({e})") from None
  v3 = 3 * num_vertices
  if arr.ndim != 2 or arr.shape[1] != v3:
    raise InputError(path, f"shape {tuple(arr.shape)}: expected [T, {v3}] "
                     f"(3 x the template's {num_vertices} vertices)")
  if arr.shape[0] == 0:
    raise InputError(path, "holds no frames")
  return arr


def read_vertices(path: str, num_vertices: int, stride: int = 1) -> np.ndarray:
  """[T,V,3] float32 frames of a vertex file, every `stride`-th source frame.

  Raises:
    InputError: as `open_vertices`, and for NaN or inf values.
  """
  arr = open_vertices(path, num_vertices)[::stride]
  out = np.asarray(arr, np.float32).reshape(len(arr), num_vertices, 3)
  if not np.all(np.isfinite(out)):
    bad = int(np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))[0]) * stride
    raise InputError(path, f"vertices hold NaN or inf (first at source frame {bad})")
  return out


class Corpus:
  """Templates, mesh assets and sequences of one corpus.

  Args:
    cfg: the `data` section of a config (root, templates, template_mesh,
      regions, splits, fps, frame_stride, features, cache_dir).

  Raises:
    InputError: at the first problem (`python -m mmtalker_jax.data.check`
      lists them all).
  """

  def __init__(self, cfg):
    self.cfg = cfg
    self.root = os.path.expanduser(cfg.root)
    if not os.path.isdir(self.root):
      raise InputError(self.root, "corpus folder not found")
    self.templates = safe_pickle.load_templates(os.path.join(self.root, cfg.templates))
    self.assets: MeshAssets = load_mesh_assets(
        os.path.join(self.root, cfg.template_mesh), dict(cfg.regions), self.root)
    check_mesh_size(self.assets, cfg, os.path.join(self.root, cfg.template_mesh))
    v = self.assets.num_vertices
    for subject, tmpl in self.templates.items():
      if len(tmpl) != v:
        raise InputError(os.path.join(self.root, cfg.templates),
                         f"template of {subject!r} has {len(tmpl)} vertices, the "
                         f"topology {cfg.template_mesh} has {v}")
    self.sequences, problems = pair_files(self.root)
    if problems:
      raise problems[0]
    missing = sorted({s.subject for s in self.sequences} - set(self.templates))
    if missing:
      raise InputError(os.path.join(self.root, cfg.templates),
                       f"subject {missing[0]!r} has sequences but no template")
    self._frames: dict[str, int] = {}
    self._key_visemes: dict[tuple[str, bool], np.ndarray] = {}
    self._recognizer = None
    self.train_subjects = list(cfg.splits.train.subjects)

  @property
  def fps(self) -> float:
    return float(self.cfg.fps)

  def split(self, name: str) -> list[Sequence]:
    """The sequences of split `name`."""
    if name not in self.cfg.splits:
      raise InputError("", f"unknown split {name!r}; the config has {sorted(self.cfg.splits)}")
    spec = self.cfg.splits[name]
    return [s for s in self.sequences if in_split(s, spec)]

  def style_index(self, subject: str) -> int:
    """Index of the speaking style used for `subject` (its own if it trained)."""
    if subject in self.train_subjects:
      return self.train_subjects.index(subject)
    style = self.cfg.get("unseen_style") or self.train_subjects[0]
    return self.train_subjects.index(style)

  def num_frames(self, seq: Sequence) -> int:
    """Mesh frames after the frame stride, read from the npy header."""
    if seq.name not in self._frames:
      arr = open_vertices(seq.npy, self.assets.num_vertices)
      self._frames[seq.name] = len(range(0, arr.shape[0], int(self.cfg.frame_stride)))
    return self._frames[seq.name]

  def vertices(self, seq: Sequence) -> np.ndarray:
    """[T,V,3] float32 mesh frames (after the frame stride)."""
    return read_vertices(seq.npy, self.assets.num_vertices, int(self.cfg.frame_stride))

  def features(self, seq: Sequence) -> np.ndarray:
    """[F,C] audio input (`audio.features`) aligned to the sequence's mesh frames (cached)."""
    cache = self.cfg.get("cache_dir") or os.path.join(self.root, ".feature_cache")
    return audio_lib.cached_features(seq.wav, self.num_frames(seq), self.fps,
                                    dict(self.cfg.features), cache)

  def key_visemes(self, seq: Sequence, recognize: bool | None = None) -> np.ndarray:
    """[T] int32 key visemes of the sequence's frames (`visemes.key_track`;
    kept in memory): phones from `<root>/phones/<name>.json`, SynthTalk's
    generator, or pocketsphinx on the wav (keymotion/phones.py: `for_sequence`);
    with `recognize` (default: data.key_frames == 'pocketsphinx'),
    pocketsphinx whatever else there is (what a model meets on new speech)."""
    if recognize is None:
      recognize = self.cfg.get("key_frames", "corpus") == "pocketsphinx"
    if (seq.name, recognize) not in self._key_visemes:
      from mmtalker_jax.keymotion import phones, visemes  # deferred: pocketsphinx

      spec = None
      if not recognize and self.cfg.get("synthetic") and self.cfg.synthetic.get("enabled"):
        from mmtalker_jax.data.synthetic.corpus import spec_from_config
        spec = spec_from_config(self.cfg)
      wave = lambda: audio_lib.load_audio(seq.wav, phones.SAMPLE_RATE)
      if recognize:
        found = self._recognize(wave())
      else:
        found, _ = phones.for_sequence(self.root, seq.name, wave, spec, self._recognize)
      t = self.num_frames(seq)
      self._key_visemes[(seq.name, recognize)] = visemes.key_track(
          visemes.key_frames(found, self.fps, t), t)
    return self._key_visemes[(seq.name, recognize)]

  def _recognize(self, wave: np.ndarray):
    """pocketsphinx's phones of `wave`, its decoder made on first use."""
    if self._recognizer is None:
      from mmtalker_jax.keymotion.phones import Recognizer
      self._recognizer = Recognizer()
    return self._recognizer(wave)

  def template(self, seq: Sequence) -> np.ndarray:
    return self.templates[seq.subject]

  def __iter__(self) -> Iterator[Sequence]:
    return iter(self.sequences)
