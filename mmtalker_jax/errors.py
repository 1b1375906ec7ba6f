"""User-facing errors: one line that names the file and what is wrong."""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn, TypeVar

T = TypeVar("T")


class InputError(Exception):
  """A problem the user can fix: a bad file, a missing subject, a bad flag.

  Attributes:
    path: the file or folder at fault ('' when none applies).
    message: what is wrong and, where possible, how to fix it.
  """

  def __init__(self, path: str | os.PathLike, message: str):
    self.path = os.fspath(path)
    self.message = message
    super().__init__(f"{self.path}: {message}" if self.path else message)


def report(error: Exception) -> None:
  """The one line a user error prints: 'error: <path>: <what is wrong>' on stderr."""
  print(f"error: {error}", file=sys.stderr, flush=True)


def note(line: str) -> None:
  """A remark that is not an error: 'note: <line>' on stderr."""
  print(f"note: {line}", file=sys.stderr, flush=True)


def exit_on_input_error(fn: Callable[[], T]) -> T | NoReturn:
  """Runs `fn`; an `InputError` becomes one line on stderr and exit code 2."""
  try:
    return fn()
  except InputError as e:
    report(e)
    raise SystemExit(2) from None
