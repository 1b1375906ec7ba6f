"""Evaluates a checkpoint: LVE, EVE, FDD, |FDD|, MVE beside two baselines.

  python evaluate.py --ckpt runs/synthtalk [--split test|val|test_b] [--data ROOT]
                     [--out results.json] [--save-pred DIR] [--render DIR]
"""

import os

from absl import flags

from mmtalker_jax.cli import run_app

_CKPT = flags.DEFINE_string("ckpt", None, "A run's workdir (best, else latest step) or a step folder.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test", "test_b"], "Split to evaluate.")
_DATA = flags.DEFINE_string("data", None, "Corpus root (default: the one the run trained on).")
_OUT = flags.DEFINE_string("out", None, "Write the numbers as JSON here.")
_SAVE_PRED = flags.DEFINE_string("save-pred", None, "Write {subject}_{sentence}_condition_{style}.npy here.")
_RENDER = flags.DEFINE_string("render", None, "Write ground truth | prediction | error MP4s of "
                              "the first eval.render_sequences sequences here.")
flags.mark_flags_as_required(["ckpt"])


def run():
  import numpy as np

  from mmtalker_jax import fileio
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.data.pipeline import Batcher
  from mmtalker_jax.training import evaluation, report, restore
  from mmtalker_jax.viz.compare import write_comparison

  config = restore.read_run_config(_CKPT.value)
  if _DATA.value:
    config.data.root = _DATA.value
  corpus = Corpus(config.data)
  run_ = restore.restore(_CKPT.value, corpus.assets)
  mean_motion = run_.mean_motion
  if mean_motion is None:
    mean_motion = evaluation.mean_training_motion(corpus)
  batcher = Batcher(corpus, _SPLIT.value, int(config.eval.batch_size),
                    tuple(config.data.bucket_frames), train=False)

  to_render = int(config.eval.get("render_sequences", 3))
  rendered = []

  def on_sequence(seq, pred):
    style = run_.styles[corpus.style_index(seq.subject)]
    if _SAVE_PRED.value:
      path = os.path.join(_SAVE_PRED.value, f"{seq.subject}_{seq.sentence}_condition_{style}.npy")
      with fileio.atomic_path(path) as tmp:
        np.save(tmp, pred.reshape(len(pred), -1))
    if _RENDER.value and len(rendered) < to_render:
      path = os.path.join(_RENDER.value, f"{seq.subject}_{seq.sentence}_condition_{style}.mp4")
      write_comparison(path, corpus.vertices(seq), pred, corpus.assets.faces, corpus.fps, seq.wav)
      rendered.append(path)

  result = evaluation.evaluate(evaluation.make_predict_fn(run_.model), run_.params, batcher,
                               run_.mesh, mean_motion, on_sequence)
  scale = report.scales(config.scale)
  print(f"{_SPLIT.value} split of {corpus.root}: {result['sequences']} sequences, "
        f"checkpoint step {run_.step} of {run_.workdir}")
  print(report.table(result, scale))
  if _OUT.value:
    report.write_json(_OUT.value, result, scale, _SPLIT.value, run_.step)
    print(f"wrote {_OUT.value}")
  for path in rendered:
    print(f"rendered {path}")


if __name__ == "__main__":
  run_app(run)
