"""Trains a network: MMTalker, or FaceFormer (config.model.name; docs/faceformer.md).

  python train.py --config configs/default.py --workdir runs/synthtalk [--config.train.num_steps=500]

Several hosts: pass --coordinator_address, --num_processes and --process_id on
each, or --distributed where jax.distributed discovers them (see
mmtalker_jax/distributed.py). Compiled programs are kept in --compile_cache
(mmtalker_jax/compile_cache.py), so a restart or the next run with the same
shapes compiles nothing.
"""

from mmtalker_jax.allocator import manage_heap, reexec_with_tcmalloc

reexec_with_tcmalloc()  # before JAX starts: see mmtalker_jax/allocator.py


from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmtalker_jax import compile_cache, distributed  # noqa: E402
from mmtalker_jax.cli import parse_flags, quiet_process  # noqa: E402
from mmtalker_jax.errors import exit_on_input_error, report  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (created; resumed if it holds a run).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  quiet_process()
  exit_on_input_error(distributed.initialize)  # bad job flags fail before the heavy imports
  compile_cache.enable()
  # Compiler memory is not kept, and the heap is capped: see mmtalker_jax/allocator.py.
  manage_heap(float(_CONFIG.value.train.get("host_memory_gib", 0.0)))
  from mmtalker_jax.training import trainer

  try:
    exit_on_input_error(lambda: trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value))
  except trainer.TrainingStopped as e:
    report(e)
    raise SystemExit(3) from None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
