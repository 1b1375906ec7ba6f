"""Flag parsing for the entry scripts: a bad flag is one line on stderr, exit 2."""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags, logging

from mmtalker_jax import compile_cache
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
    logging.set_verbosity(logging.ERROR)  # Orbax logs every file it touches at INFO
    rest = list(argv[1:])
    if rest and not rest_args:
      print(f"error: unexpected argument(s): {' '.join(rest)}", file=sys.stderr)
      raise SystemExit(2)
    exit_on_input_error(lambda: run(rest) if rest_args else run())

  app.run(main, flags_parser=parse_flags)
