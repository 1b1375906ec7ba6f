"""What the entry scripts share: flag parsing and the process settings that keep
a user's error to one line (a bad flag: one line on stderr, exit 2).

The library changes no process-wide state; `quiet_process` is the one place
that does, and only the entry scripts call it.
"""

from __future__ import annotations

import faulthandler
import logging as std_logging
import re
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
    message = override_error(argv, e)
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)


def override_error(argv: list[str], error: Exception) -> str:
  """One line naming the --config.FIELD override at fault, with ml_collections'
  suggestion when it has one ('Did you mean "num_steps" instead of "num_stepz"?')."""
  text = str(error.args[0]) if error.args else str(error)
  # Some paths hand over the message as its repr: undo the escapes.
  text = text.replace("\\n", "\n").replace("\\'", "'")
  lines = [line.strip().strip("'\"") for line in text.splitlines() if line.strip()]
  missing = lines[0] if lines else ""
  suggestion = re.search(r'Did you mean "([^"]+)"', text)
  overrides = [a for a in argv[1:] if a.startswith("--config.")]
  culprit = next((a for a in overrides
                  if missing in a.split("=", 1)[0].removeprefix("--config.").split(".")), None)
  if culprit is None:
    return f"bad config override in {' '.join(overrides)}: {missing or type(error).__name__}"
  field = culprit.split("=", 1)[0]
  hint = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
  return f"{field}: the config has no field {missing!r}{hint}"


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
