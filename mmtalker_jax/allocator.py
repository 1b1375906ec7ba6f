"""Runs the entry scripts under tcmalloc when the machine has it.

XLA's CPU runtime allocates and frees its large temporaries on every call.
glibc's malloc hands blocks that large back to the kernel at once, so every
step faults all its working memory in again: on a 2-core machine about a
third of a training step's CPU time was the kernel zeroing pages (measured
on `configs/default.py`'s 160-frame train step: about 500 ms per step with
glibc, 335 ms with tcmalloc, which keeps freed pages for reuse; a 4-member
sweep's 150-step run went from 0.76x to 0.63x the wall time of its members
one after another, `bench/sweep.py`). tcmalloc's own default still hands
freed memory back gradually: a 4-member sweep step at 192 frames faulted in
about 600 MiB per step, 1.5 to 2 s of kernel time, and 0 with
TCMALLOC_RELEASE_RATE=0, which the restart sets (the process keeps its peak
memory, which every step needs again). The allocator must be chosen before the
process starts, so an entry script that finds tcmalloc (Debian/Ubuntu:
`apt-get install libtcmalloc-minimal4`) and is not already running under it
restarts itself once with `LD_PRELOAD` set. `MMTALKER_MALLOC=system` turns
this off; without the library nothing changes.

Keeping every freed page has one cost: compiling a program takes memory
(XLA's compiler, about 1.5 GiB for a default-config train step) that the
program never needs again, and the steps' freed pages would sit beside the
next compile's. `release_around_compiles` hands free pages back just before
and just after every backend compile: 40 steps and an evaluation of
`train.py --config configs/default.py` (four train-step compiles) peaked at
2.9 GB with it and at most two steps in flight (training/trainer.py), 4.8 GB
with neither, and 2.9 GB on glibc's malloc with neither, at glibc's slower
steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
         "/usr/local/lib")


def find_tcmalloc() -> str | None:
  """The path of a tcmalloc shared library on this machine, or None."""
  for directory in _DIRS:
    for name in _NAMES:
      path = os.path.join(directory, name)
      if os.path.isfile(path):
        return path
  found = ctypes.util.find_library("tcmalloc_minimal")
  return found if found and os.path.isabs(found) else None


def running_under_tcmalloc() -> bool:
  return "tcmalloc" in os.environ.get("LD_PRELOAD", "")


def reexec_with_tcmalloc() -> None:
  """Restarts this process under tcmalloc, once; returns when that is not possible or wanted.

  Call first thing in an entry script, before JAX is imported.
  """
  if (os.environ.get("MMTALKER_MALLOC", "tcmalloc") == "system" or running_under_tcmalloc()
      or not sys.platform.startswith("linux")):
    return
  library = find_tcmalloc()
  if library is None:
    return
  env = dict(os.environ)
  env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
  # tcmalloc prints a notice for every allocation above 1 GiB unless told otherwise.
  env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
  # Keep freed pages instead of handing them back to the kernel bit by bit:
  # with the default rate a 4-member sweep step's largest temporaries were
  # released and faulted in again on every step.
  env.setdefault("TCMALLOC_RELEASE_RATE", "0")
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
  except OSError:
    return  # keep running with the system allocator


# Lowering ends just before the backend compile starts; the compile's own end.
_AROUND_COMPILES = ("/jax/core/compile/jaxpr_to_mlir_module_duration",
                    "/jax/core/compile/backend_compile_duration")


def release_around_compiles() -> None:
  """Under tcmalloc, returns free memory to the kernel around every XLA compile.

  An entry script calls this once (it registers a JAX monitoring listener for
  the process's lifetime); elsewhere it does nothing.
  """
  if not running_under_tcmalloc():
    return
  try:
    release = ctypes.CDLL(None).MallocExtension_ReleaseFreeMemory
  except (OSError, AttributeError):
    return  # a tcmalloc without the extension API
  from jax import monitoring

  def on_duration(event: str, seconds: float, **kwargs) -> None:
    del seconds, kwargs
    if event in _AROUND_COMPILES:
      release()

  monitoring.register_event_duration_secs_listener(on_duration)
