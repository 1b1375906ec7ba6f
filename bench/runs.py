"""A whole command timed and sized: wall time and the peak resident memory of its process."""

import os
import subprocess
import time


def run_measured(cmd: list[str], cwd: str) -> tuple[float, float]:
  """Runs `cmd` to the end; returns (wall seconds, peak RSS in GiB).

  The peak is the process's own (os.wait4's rusage), a process that
  re-executes itself (train.py under tcmalloc) included.

  Raises:
    SystemExit: with the end of its stderr, if it fails.
  """
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  err = proc.stderr.read()
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  wall = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{err[-3000:]}")
  return wall, usage.ru_maxrss / 2**20  # Linux reports KiB
