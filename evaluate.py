"""Evaluates a checkpoint: LVE, EVE, FDD, |FDD|, MVE beside two baselines.

  python evaluate.py --ckpt runs/synthtalk [--split test|val|test_b] [--data ROOT]
                     [--long SECONDS] [--out results.json] [--save-pred DIR] [--render DIR]
  python evaluate.py --ckpt vocaset.pth --config configs/faceformer_vocaset.py [--data ROOT]

A released FaceFormer `.pth` is read without torch and scored on the
config's corpus (docs/faceformer.md). On a sweep's workdir (train.py with a `sweep` config) it prints a row per
replica, then each member's mean and 95% interval over seeds and its paired
difference from `sweep.reference` (mmtalker_jax/training/intervals.py).
Several processes (the flags of train.py: --coordinator_address, --num_processes,
--process_id) split the batches between them; process 0 prints and writes.
"""

from mmtalker_jax.allocator import manage_heap, reexec_with_tcmalloc

reexec_with_tcmalloc()  # before JAX starts: see mmtalker_jax/allocator.py

from absl import flags  # noqa: E402

from mmtalker_jax import compile_cache, distributed  # noqa: E402
from mmtalker_jax.cli import run_app  # noqa: E402
from mmtalker_jax.training import population  # noqa: E402

_CKPT = flags.DEFINE_multi_string("ckpt", None, "A run's workdir (best, else latest step), a "
                                  "step folder, a sweep's workdir (every member), a released "
                                  "FaceFormer .pth; or several sweep workdirs, compared.")
_CONFIG = flags.DEFINE_string("config", None, "With a .pth --ckpt: the FaceFormer config that "
                              "describes it (configs/faceformer_vocaset.py, faceformer_biwi.py).")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test", "test_b"], "Split to evaluate.")
_DATA = flags.DEFINE_string("data", None, "Corpus root (default: the one the run trained on).")
_LONG = flags.DEFINE_float("long", None, "Join each subject's sentences into sequences of this "
                           "many seconds (or a little more) and evaluate those.", lower_bound=1.0)
_OUT = flags.DEFINE_string("out", None, "Write the numbers as JSON here.")
_SAVE_PRED = flags.DEFINE_string("save-pred", None, "Write {subject}_{sentence}_condition_{style}.npy here.")
_RENDER = flags.DEFINE_string("render", None, "Write ground truth | prediction | error MP4s of "
                              "the first eval.render_sequences sequences here.")
_KEY_FRAMES = flags.DEFINE_enum("key_frames", "corpus", ["corpus", "pocketsphinx"],
                                "Key-motion runs: key frames from the corpus (alignment files, "
                                "SynthTalk's generator) or recognized by pocketsphinx, as new "
                                "speech gets them.")
_BILABIAL = flags.DEFINE_bool("bilabial", False, "Also score the lip opening at bilabial key "
                              "frames (/p b m/; docs/keymotion.md).")
flags.mark_flags_as_required(["ckpt"])


def split_batcher(corpus, config, models):
  """The split's batches, each process taking its rows of every global batch,
  with the key-motion inputs any of `models` reads."""
  import jax
  from mmtalker_jax.data.pipeline import Batcher

  key_inputs = sorted({k for model in models for k in model.key_inputs})
  return Batcher(corpus, _SPLIT.value, int(config.eval.batch_size),
                 tuple(config.data.bucket_frames), train=False,
                 process_index=jax.process_index(), process_count=jax.process_count(),
                 key_inputs=key_inputs)


def settings(config) -> dict:
  """What a population's JSON records of how a member differs: model, key motions, sampler."""
  return {"model": config.model.get("name", "mmtalker"),
          "key_motion": config.model.get("key_motion", "none"), **config.sampler}


def run():
  import jax
  from mmtalker_jax.data.corpus import Corpus
  from mmtalker_jax.errors import InputError
  from mmtalker_jax.inference.decoder import decode_budget
  from mmtalker_jax.inference.predictor import Predictor
  from mmtalker_jax.training import evaluation, intervals, report, restore
  from mmtalker_jax.training.writers import SequenceWriter

  distributed.initialize()
  compile_cache.enable()
  manage_heap()  # compiler memory is not kept: see mmtalker_jax/allocator.py
  # Flags that work on one run in one process.
  one_run = [flag for flag, value in (("--long", _LONG.value), ("--save-pred", _SAVE_PRED.value),
                                      ("--render", _RENDER.value)) if value]
  if jax.process_count() > 1 and one_run:
    raise InputError("", f"{one_run[0]} runs in one process; drop --coordinator_address")
  lead = jax.process_index() == 0
  ckpts = list(_CKPT.value)
  # {member: {seed: run folder}}; a single run is a population of one.
  folders, origin = population.gather(ckpts)
  is_population = "" not in folders
  if is_population and one_run:
    raise InputError(ckpts[0], f"a sweep's workdir; {one_run[0]} takes one run: "
                     f"--ckpt {ckpts[0]}/members/NAME[/seed_S]")
  if _LONG.value and _BILABIAL.value:
    raise InputError("", "--bilabial scores the split's own sentences; drop --long")
  published = restore.is_published(ckpts[0])
  if published:
    config = restore.published_config(ckpts[0], _CONFIG.value)
  elif _CONFIG.value:
    raise InputError(ckpts[0], "--config is for a .pth checkpoint; a run folder brings "
                     "its own config")
  else:
    configs = {m: restore.read_run_config(next(iter(seeds.values())))
               for m, seeds in folders.items()}
    config = next(iter(configs.values()))
    for member, other in configs.items():
      if other.data.to_dict() != config.data.to_dict():
        raise InputError(origin[member], f"trained on other data than {ckpts[0]} (the data "
                         "sections of their configs differ); compared runs need one corpus")
  if _DATA.value:
    config.data.root = _DATA.value
  config.data.key_frames = _KEY_FRAMES.value
  corpus = Corpus(config.data)
  runs = {(m, s): restore.restore(f, corpus.assets, config if published else None)
          for m, seeds in folders.items() for s, f in seeds.items()}
  rows = {key: population.row_name(*key, several_seeds=len(folders[key[0]]) > 1)
          for key in runs}
  first = next(iter(runs.values()))
  mean_motion = first.mean_motion
  if mean_motion is None:
    mean_motion = evaluation.mean_training_motion(corpus)
  writer = SequenceWriter(corpus, first.styles, _SAVE_PRED.value, _RENDER.value,
                          int(config.eval.render_sequences))
  if _LONG.value:
    result = evaluation.evaluate_long(Predictor(first), corpus, _SPLIT.value, _LONG.value,
                                      mean_motion, writer)
    what = f"{_SPLIT.value} split of {corpus.root} joined into {_LONG.value:g} s sequences"
  else:
    # One compiled decoder per --ckpt (the replicas of a population share one model).
    decoders = {}
    for (member, _), r in runs.items():
      if origin[member] not in decoders:
        decoders[origin[member]] = evaluation.make_decoder(r.model, decode_budget(config))
    decoder = {rows[(m, s)]: decoders[origin[m]] for m, s in runs}
    result = evaluation.evaluate_rows(
        decoder, {rows[key]: r.params for key, r in runs.items()},
        split_batcher(corpus, config, [r.model for r in runs.values()]),
        first.mesh, mean_motion, writer, bilabial=_BILABIAL.value)
    what = f"{_SPLIT.value} split of {corpus.root}"
  if not lead:
    return
  scale = report.scales(config.scale)
  steps = ", ".join(f"{rows[key]} {r.step}" for key, r in runs.items())
  print(f"{what}: {result['sequences']} sequences, checkpoint step"
        + (f"s {steps} of {', '.join(ckpts)}" if is_population else f" {first.step} of {first.workdir}"))
  print(report.table(result, scale))
  if is_population:
    per_seed = {m: {s: result[rows[(m, s)]] for s in seeds} for m, seeds in folders.items()}
    reference = population.reference_of(ckpts[0], list(folders))
    try:
      summary = intervals.summarize(per_seed, reference, evaluation.metrics_of(result))
    except ValueError as e:
      raise InputError(ckpts[0], str(e)) from None
    print(report.population_table(summary, scale))
  for path in writer.rendered:
    print(f"rendered {path}")
  if not _OUT.value:
    return
  if is_population:
    report.write_population_json(
        _OUT.value, summary, result, scale, _SPLIT.value, result["sequences"],
        {m: settings(runs[(m, next(iter(seeds)))].config) for m, seeds in folders.items()},
        {m: {str(s): runs[(m, s)].step for s in seeds} for m, seeds in folders.items()})
  else:
    report.write_json(_OUT.value, result, scale, _SPLIT.value, first.step,
                      long_seconds=_LONG.value)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  run_app(run)
