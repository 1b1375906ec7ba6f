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
next compile's. `manage_heap` hands free pages back just before
and just after every backend compile: 40 steps and an evaluation of
`train.py --config configs/default.py` (four train-step compiles) peaked at
2.9 GB with it and at most two steps in flight (training/trainer.py), 4.8 GB
with neither, and 2.9 GB on glibc's malloc with neither, at glibc's slower
steps.

What tcmalloc keeps, it keeps by address: XLA:CPU takes each step's
temporaries as one block whose size depends on the length bucket, and batches
and outputs allocated in between pin parts of the freed blocks, so a block of
another size often fits nowhere and the heap grows. A 4-member sweep (four
buckets, 1.6-2.3 GiB of temporaries a step) peaked at 9.3 GiB in 100 steps and
10.4 GB in 600, for at most 3.1 GiB in use between compiles. With
`train.host_memory_gib`, `manage_heap` hands free pages back whenever the
heap holds more than that (docs/training.md, "Memory on the host"), at a
cost when the cap sits close to what the steps use: the next steps fault the
pages in again (20-25% of the default run's steps per second at 1.75 GiB,
none measurable at its 2.25; docs/benchmarks.md, "Host memory").

tcmalloc's own `heap_limit_mb` was tried first and dropped: it is a hard
limit, and an allocation past it fails. A default run under a 2.25 GiB limit
stopped with RESOURCE_EXHAUSTED after 570 steps although 60 steps and an
evaluation had passed, because small-object pages that cannot be handed back
accumulate. A soft cap never stops a run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import threading
import time
from typing import Callable

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


# Recorded as a scalar when a backend compile (or persistent-cache read) starts,
# and as a duration when it ends (jax/_src/dispatch.py, log_elapsed_time).
_COMPILE = "/jax/core/compile/backend_compile_duration"


@functools.cache
def _numeric_property():
  """tcmalloc's MallocExtension_GetNumericProperty, or None."""
  try:
    get_property = ctypes.CDLL(None).MallocExtension_GetNumericProperty
  except (OSError, AttributeError):
    return None  # no tcmalloc, or one without the extension API
  get_property.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]
  return get_property


def heap_held_bytes() -> int | None:
  """Bytes of heap tcmalloc holds (mapped, minus pages handed back); None without tcmalloc."""
  get_property = _numeric_property() if running_under_tcmalloc() else None
  if get_property is None:
    return None
  heap, unmapped = ctypes.c_size_t(), ctypes.c_size_t()
  get_property(b"generic.heap_size", ctypes.byref(heap))
  get_property(b"tcmalloc.pageheap_unmapped_bytes", ctypes.byref(unmapped))
  return heap.value - unmapped.value


def manage_heap(cap_gib: float = 0.0, every_seconds: float = 0.1) -> bool:
  """Under tcmalloc: free memory goes back to the kernel around every XLA
  compile and, with `cap_gib` > 0, whenever the heap holds more than that.

  An entry script calls this once (it registers JAX monitoring listeners and
  starts a daemon thread for the process's lifetime); elsewhere it does
  nothing. The cap is soft: a thread looks every `every_seconds` and hands
  back free pages, as many as the heap holds past the cap, so no allocation
  is ever refused. What it bounds is what fragmentation adds; a step whose
  temporaries do not fit the free pages still takes the heap past the cap
  until the next look.

  Returns:
    whether a cap is in force.
  """
  if not running_under_tcmalloc():
    return False
  try:
    extension = ctypes.CDLL(None)
    release = extension.MallocExtension_ReleaseFreeMemory
    release_bytes = extension.MallocExtension_ReleaseToSystem
  except (OSError, AttributeError):
    return False  # a tcmalloc without the extension API
  release_bytes.argtypes = [ctypes.c_size_t]
  from jax import monitoring

  def around_compiles(event: str, value: float, **kwargs) -> None:
    del value, kwargs
    if event == _COMPILE:
      release()

  monitoring.register_scalar_listener(around_compiles)  # a compile starts
  monitoring.register_event_duration_secs_listener(around_compiles)  # ... and ends
  if cap_gib <= 0:
    return False
  cap = int(cap_gib * 2**30)

  def watch() -> None:
    while True:
      trim_to_cap(cap, lambda: heap_held_bytes() or 0, release_bytes)
      time.sleep(every_seconds)

  threading.Thread(target=watch, name="heap-cap", daemon=True).start()
  return True


def trim_to_cap(cap: int, held: Callable[[], int], release: Callable[[int], None],
                tries: int = 4) -> None:
  """Asks `release` (tcmalloc's ReleaseToSystem) for the heap's excess over
  `cap` bytes until `held()` is within it, at most `tries` times.

  Only the excess: the rest of the free pages stay for the next steps. Asking
  once is not enough: tcmalloc releases whole spans and counts what it
  released beyond a request against the next requests, which it then skips,
  so after one large span a single request per look left the heap past the
  cap for up to about a second.
  """
  for _ in range(tries):
    excess = held() - cap
    if excess <= 0:
      return
    release(excess)
