"""Flag parsing for the entry scripts: a bad flag is one line on stderr, exit 2."""

from __future__ import annotations

import sys

from absl import flags


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with config-override errors reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e).splitlines()[0]
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    message = f"unknown config field or bad value in {overrides}: {e}"
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(2)
