"""What `evaluate.py` writes per sequence: predictions as npy, comparison MP4s."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import soundfile as sf

from mmtalker_jax import fileio
from mmtalker_jax.data.corpus import Corpus
from mmtalker_jax.data.long_form import LongSequence


class SequenceWriter:
  """Called with (sequence, prediction [T,V,3]) for every evaluated sequence.

  Args:
    corpus: the corpus evaluated (topology, fps, ground truth).
    styles: the checkpoint's style names.
    save_dir: write {subject}_{sentence}_condition_{style}.npy ([T, V*3]) here.
    render_dir: write ground truth | prediction | error MP4s of the first
      `render_count` sequences here.
  """

  def __init__(self, corpus: Corpus, styles: list[str], save_dir: str | None,
               render_dir: str | None, render_count: int):
    self.corpus = corpus
    self.styles = styles
    self.save_dir = save_dir
    self.render_dir = render_dir
    self.render_count = render_count
    self.rendered: list[str] = []

  def __call__(self, seq, pred: np.ndarray) -> None:
    style = self.styles[self.corpus.style_index(seq.subject)]
    stem = f"{seq.subject}_{seq.sentence}_condition_{style}"
    if self.save_dir:
      with fileio.atomic_path(os.path.join(self.save_dir, stem + ".npy")) as tmp:
        np.save(tmp, pred.reshape(len(pred), -1))
    if self.render_dir and len(self.rendered) < self.render_count:
      self.rendered.append(self._render(os.path.join(self.render_dir, stem + ".mp4"), seq, pred))

  def _render(self, path: str, seq, pred: np.ndarray) -> str:
    from mmtalker_jax.viz.compare import write_comparison  # deferred: rendering is optional

    corpus = self.corpus
    if not isinstance(seq, LongSequence):
      write_comparison(path, corpus.vertices(seq), pred, corpus.assets.faces, corpus.fps, seq.wav)
      return path
    with tempfile.TemporaryDirectory() as tmp:
      wav = os.path.join(tmp, "speech.wav")
      sf.write(wav, seq.audio, int(corpus.cfg.features.sample_rate), subtype="PCM_16")
      write_comparison(path, seq.vertices, pred, corpus.assets.faces, corpus.fps, wav)
    return path
