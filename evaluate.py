"""Evaluates a checkpoint: LVE, EVE, FDD, |FDD|, MVE beside two baselines.

  python evaluate.py --ckpt runs/synthtalk [--split test|val|test_b] [--data ROOT]
                     [--long SECONDS] [--out results.json] [--save-pred DIR] [--render DIR]

On a sweep's workdir (train.py with a `sweep` config) it prints a row per member.
Several processes (the flags of train.py: --coordinator_address, --num_processes,
--process_id) split the batches between them; process 0 prints and writes.
"""

from mmtalker_jax.allocator import release_around_compiles, reexec_with_tcmalloc

reexec_with_tcmalloc()  # before JAX starts: see mmtalker_jax/allocator.py

from absl import flags  # noqa: E402

from mmtalker_jax import compile_cache, distributed  # noqa: E402
from mmtalker_jax.cli import run_app  # noqa: E402
from mmtalker_jax.training import members  # noqa: E402

_CKPT = flags.DEFINE_string("ckpt", None, "A run's workdir (best, else latest step), a step "
                            "folder, or a sweep's workdir (every member).")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test", "test_b"], "Split to evaluate.")
_DATA = flags.DEFINE_string("data", None, "Corpus root (default: the one the run trained on).")
_LONG = flags.DEFINE_float("long", None, "Join each subject's sentences into sequences of this "
                           "many seconds (or a little more) and evaluate those.", lower_bound=1.0)
_OUT = flags.DEFINE_string("out", None, "Write the numbers as JSON here.")
_SAVE_PRED = flags.DEFINE_string("save-pred", None, "Write {subject}_{sentence}_condition_{style}.npy here.")
_RENDER = flags.DEFINE_string("render", None, "Write ground truth | prediction | error MP4s of "
                              "the first eval.render_sequences sequences here.")
flags.mark_flags_as_required(["ckpt"])


def split_batcher(corpus, config):
  """The split's batches, each process taking its rows of every global batch."""
  import jax
  from mmtalker_jax.data.pipeline import Batcher

  return Batcher(corpus, _SPLIT.value, int(config.eval.batch_size),
                 tuple(config.data.bucket_frames), train=False,
                 process_index=jax.process_index(), process_count=jax.process_count())


def run():
  import jax
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.errors import InputError
  from mmtalker_jax.inference.decoder import decode_budget
  from mmtalker_jax.inference.predictor import Predictor
  from mmtalker_jax.training import evaluation, report, restore
  from mmtalker_jax.training.writers import SequenceWriter

  distributed.initialize()
  compile_cache.enable()
  release_around_compiles()  # compiler memory is not kept: see mmtalker_jax/allocator.py
  if jax.process_count() > 1:
    for flag, value in (("--long", _LONG.value), ("--save-pred", _SAVE_PRED.value),
                        ("--render", _RENDER.value)):
      if value:
        raise InputError("", f"{flag} runs in one process; drop --coordinator_address")
  lead = jax.process_index() == 0
  if members.is_sweep_dir(_CKPT.value):
    return run_sweep(lead)
  config = restore.read_run_config(_CKPT.value)
  if _DATA.value:
    config.data.root = _DATA.value
  corpus = Corpus(config.data)
  run_ = restore.restore(_CKPT.value, corpus.assets)
  mean_motion = run_.mean_motion
  if mean_motion is None:
    mean_motion = evaluation.mean_training_motion(corpus)
  writer = SequenceWriter(corpus, run_.styles, _SAVE_PRED.value, _RENDER.value,
                          int(config.eval.render_sequences))
  if _LONG.value:
    result = evaluation.evaluate_long(Predictor(run_), corpus, _SPLIT.value, _LONG.value,
                                      mean_motion, writer)
    what = f"{_SPLIT.value} split of {corpus.root} joined into {_LONG.value:g} s sequences"
  else:
    batcher = split_batcher(corpus, config)
    decoder = evaluation.make_decoder(run_.model, decode_budget(config))
    result = evaluation.evaluate(decoder, run_.params, batcher, run_.mesh, mean_motion, writer)
    what = f"{_SPLIT.value} split of {corpus.root}"
  if not lead:
    return
  scale = report.scales(config.scale)
  print(f"{what}: {result['sequences']} sequences, checkpoint step {run_.step} of {run_.workdir}")
  print(report.table(result, scale))
  if _OUT.value:
    report.write_json(_OUT.value, result, scale, _SPLIT.value, run_.step, long_seconds=_LONG.value)
    print(f"wrote {_OUT.value}")
  for path in writer.rendered:
    print(f"rendered {path}")


def run_sweep(lead: bool):
  """One row per member of the sweep at --ckpt, beside the two baselines."""
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.errors import InputError
  from mmtalker_jax.inference.decoder import decode_budget
  from mmtalker_jax.training import evaluation, report, restore

  for flag, value in (("--long", _LONG.value), ("--save-pred", _SAVE_PRED.value),
                      ("--render", _RENDER.value)):
    if value:
      raise InputError(_CKPT.value, f"a sweep's workdir; {flag} takes one member: "
                       f"--ckpt {_CKPT.value}/members/NAME")
  folders = members.sweep_member_dirs(_CKPT.value)
  config = restore.read_run_config(next(iter(folders.values())))
  if _DATA.value:
    config.data.root = _DATA.value
  corpus = Corpus(config.data)
  runs = {name: restore.restore(folder, corpus.assets) for name, folder in folders.items()}
  first = next(iter(runs.values()))
  mean_motion = first.mean_motion
  if mean_motion is None:
    mean_motion = evaluation.mean_training_motion(corpus)
  batcher = split_batcher(corpus, config)
  decoder = evaluation.make_decoder(first.model, decode_budget(config))
  result = evaluation.evaluate_rows(decoder, {n: r.params for n, r in runs.items()}, batcher,
                                    first.mesh, mean_motion)
  if not lead:
    return
  scale = report.scales(config.scale)
  print(f"{_SPLIT.value} split of {corpus.root}: {result['sequences']} sequences, "
        f"{len(runs)} members of {_CKPT.value} (steps "
        + ", ".join(f"{n} {r.step}" for n, r in runs.items()) + ")")
  print(report.table(result, scale))
  if _OUT.value:
    report.write_sweep_json(_OUT.value, result, scale, _SPLIT.value,
                            {n: dict(r.config.sampler) for n, r in runs.items()},
                            {n: r.step for n, r in runs.items()})
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  run_app(run)
