"""A full disk, recognised before a save and through whatever wraps the error."""

from __future__ import annotations

import errno
import shutil


def is_no_space(e: BaseException) -> bool:
  """True for a failed write because the disk is full (from Python or Orbax's storage layer)."""
  while e is not None:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "No space left on device" in str(e) or "ENOSPC" in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def check_space(workdirs: list[str], state_bytes: int) -> None:
  """Raises OSError(ENOSPC) unless the disk has room for one checkpoint in each workdir.

  Orbax writes a checkpoint under a temporary name and renames it when done,
  so a save that runs out of space midway leaves every earlier checkpoint
  intact, but its storage threads print a screen of errors on the way; this
  check fails first, in one line. The margin covers metadata.
  """
  need = int(state_bytes * 1.1) + (1 << 20)
  free = shutil.disk_usage(workdirs[0]).free
  if free < need * len(workdirs):
    raise OSError(errno.ENOSPC, f"No space left on device: a checkpoint needs about "
                  f"{need * len(workdirs) / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free",
                  workdirs[0])
