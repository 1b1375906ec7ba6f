"""What the entry scripts share: flag parsing and the process settings that keep
a user's error to one line (a bad flag: one line on stderr, exit 2).

The library changes no process-wide state; `quiet_process` is the one place
that does, and only the entry scripts call it.
"""

from __future__ import annotations

import faulthandler
import logging as std_logging
import sys
import warnings
from typing import Callable

from absl import app, flags, logging

from mmtalker_jax import compile_cache, distributed
from mmtalker_jax.errors import exit_on_input_error


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with config-override errors reported in one line."""
  argv = compile_cache.rewrite_argv(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).splitlines()[0]
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    message = f"unknown config field or bad value in {overrides}: {e}"
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def run_app(run: Callable[..., object], rest_args: bool = False) -> None:
  """Parses flags and runs `run`; user errors end in one line and exit 2.

  With `rest_args`, `run` receives the arguments that follow the flags (a list
  of str); without, such arguments are an error.
  """

  def main(argv):
    quiet_process()
    rest = list(argv[1:])
    if rest and not rest_args:
      print(f"error: unexpected argument(s): {' '.join(rest)}", file=sys.stderr)
      raise SystemExit(2)
    exit_on_input_error(lambda: run(rest) if rest_args else run())

  app.run(main, flags_parser=parse_flags)


def quiet_process() -> None:
  """Process-wide settings of train.py, evaluate.py and predict.py, each for a reason.

  - absl logging at ERROR: Orbax logs every file it touches at INFO, and that
    a read-only manager is read-only at WARNING.
  - A failed Orbax restore (a truncated checkpoint) ends in its one exception:
    asyncio would log each read nobody awaits ("Future exception was never
    retrieved"), Python would warn of reads never started, and the reads still
    in flight would report "Event loop is closed" as unraisable exceptions
    from the loop Orbax closed: dozens of lines after the one that matters.
    Only those are dropped; other unraisables still print.
  - In a multi-process job, JAX's runtime stops the survivors of a dead
    process with its own message and abort(); the fault handler absl turns on
    would append a dump of every thread to it.
  """
  logging.set_verbosity(logging.ERROR)
  std_logging.getLogger("asyncio").setLevel(std_logging.CRITICAL)
  warnings.filterwarnings("ignore", message=r"coroutine .* was never awaited",
                          category=RuntimeWarning)
  previous = sys.unraisablehook

  def hook(unraisable):
    e = unraisable.exc_value
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
      return
    previous(unraisable)

  sys.unraisablehook = hook
  if distributed.requested():
    faulthandler.disable()
