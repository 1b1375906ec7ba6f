"""Inference: any speech file to a mesh animation, at any length and resolution."""

from __future__ import annotations

import dataclasses
import time

from mmtalker_jax import errors
from mmtalker_jax.errors import InputError
from mmtalker_jax.inference import batch, export
from mmtalker_jax.inference.predictor import Predictor
from mmtalker_jax.inference.subdivide import subdivide as subdivide_mesh


@dataclasses.dataclass
class Report:
  """What `animate_files` did: the per-file totals and the time spent restoring."""
  totals: batch.Totals
  restore_seconds: float
  fps: float
  style: str

  def one_file(self, written: list[str]) -> str:
    t = self.totals
    return (f"{t.frames} frames x {t.vertices} vertices at {self.fps:g} fps "
            f"({t.audio_seconds:.2f} s of audio, style {self.style}, predicted in "
            f"{t.predict_seconds:.2f} s with compilation) -> {', '.join(written)}")

  def timings(self) -> str:
    t = self.totals
    keys = ""
    if t.aligned:
      keys = (f" (of which aligning the speech for key motions with pocketsphinx "
              f"{t.align_seconds:.2f} s: {t.phones} speech phones, {t.key_frames} key frames "
              f"in {t.aligned} file{'s' if t.aligned > 1 else ''})")
    return (f"restore {self.restore_seconds:.2f} s, read audio {t.read_seconds:.2f} s, "
            f"predict {t.predict_seconds:.2f} s (compiling included){keys}, write "
            f"{t.write_seconds:.2f} s")


def animate_files(ckpt: str, sources: list[str], outputs: list[dict], style: str | None = None,
                  subdivide: int = 0, log=print, stop_on_error: bool = False,
                  config=None, template: str | None = None) -> Report:
  """predict.py: animates every file of `sources` into its `outputs` ({format: path}).

  `config` and `template` (a mesh file) describe a released FaceFormer `.pth`
  (training/restore.py: `published`); a run folder brings its own.

  Unwritable outputs, a bad checkpoint and an unknown style fail before any
  audio is read (InputError). A bad audio file is reported in one line on
  stderr and skipped, or raised with `stop_on_error`.
  """
  from mmtalker_jax.training.restore import restore

  for paths in outputs:
    for fmt, path in paths.items():
      export.check_writable(path, is_dir=fmt == "obj")
  start = time.perf_counter()
  assets = None
  if template:
    from mmtalker_jax.mesh.assets import load_mesh_assets
    assets = load_mesh_assets(template)
  run = restore(ckpt, assets, config)
  predictor = Predictor(run)
  name = predictor.styles[predictor.style_index(style)]  # an unknown style fails here
  restore_seconds = time.perf_counter() - start
  sub = subdivide_mesh(run.model.assets.faces, subdivide)
  totals = batch.animate_all(predictor, sources, outputs, style, sub, log=log,
                             on_error=_raise if stop_on_error else errors.report)
  return Report(totals, restore_seconds, predictor.fps, name)


def _raise(error: InputError) -> None:
  raise error
