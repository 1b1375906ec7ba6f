"""Trains a network: MMTalker, or FaceFormer (config.model.name; docs/faceformer.md).

  python train.py --config configs/default.py --workdir runs/synthtalk [--config.train.num_steps=500]

Several hosts: pass --coordinator_address, --num_processes and --process_id on
each, or --distributed where jax.distributed discovers them (see
mmtalker_jax/distributed.py). Compiled programs are kept in --compile_cache
(mmtalker_jax/compile_cache.py), so a restart or the next run with the same
shapes compiles nothing.
"""

from mmtalker_jax.allocator import manage_heap, out_of_memory, reexec_with_tcmalloc

reexec_with_tcmalloc()  # before JAX starts: see mmtalker_jax/allocator.py


from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mmtalker_jax import compile_cache, distributed  # noqa: E402
from mmtalker_jax.cli import parse_flags, quiet_process  # noqa: E402
from mmtalker_jax.errors import InputError, exit_on_input_error, report  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (created; resumed if it holds a run).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  del argv
  quiet_process()
  exit_on_input_error(distributed.initialize)  # bad job flags fail before the heavy imports
  compile_cache.enable()
  # Compiler memory is not kept, and the heap is capped: see mmtalker_jax/allocator.py.
  budget = float(_CONFIG.value.train.get("host_memory_gib", 0.0))
  capped = manage_heap(budget)
  from mmtalker_jax.training import trainer

  def run():
    try:
      return trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except Exception as e:  # noqa: BLE001 -- only an allocation past the cap is caught
      if capped and out_of_memory(e):
        raise InputError("", f"the run needs more host memory than train.host_memory_gib="
                         f"{budget:g} GiB ({str(e).splitlines()[0][:120]}); raise it, or 0 for "
                         f"no cap (checkpoints already saved in {_WORKDIR.value} are intact)"
                         ) from None
      raise

  try:
    exit_on_input_error(run)
  except trainer.TrainingStopped as e:
    report(e)
    raise SystemExit(3) from None


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
