"""The entry scripts restart themselves under tcmalloc when the machine has it."""

import os
import subprocess
import sys

import pytest

from mmtalker_jax import allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PROBE = ("from mmtalker_jax.allocator import reexec_with_tcmalloc\n"
          "reexec_with_tcmalloc()\n"
          "import os, sys\n"
          "maps = open('/proc/self/maps').read()\n"
          "print('tcmalloc' in maps, sys.argv[1:], os.environ.get('TCMALLOC_RELEASE_RATE'))\n")


def _run(env_extra):
  ours = ("LD_PRELOAD", "MMTALKER_MALLOC", "TCMALLOC_RELEASE_RATE")
  env = {k: v for k, v in os.environ.items() if k not in ours}
  env.update(env_extra)
  env["PYTHONPATH"] = ROOT
  proc = subprocess.run([sys.executable, "-c", _PROBE, "a b", "--flag=1"], env=env,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  return proc.stdout.strip()


@pytest.mark.skipif(allocator.find_tcmalloc() is None or not sys.platform.startswith("linux"),
                    reason="no tcmalloc on this machine (apt-get install libtcmalloc-minimal4)")
def test_restarts_under_tcmalloc_with_the_same_arguments():
  # ...keeping freed memory (a rate the caller sets is left alone).
  assert _run({}) == "True ['a b', '--flag=1'] 0"
  assert _run({"TCMALLOC_RELEASE_RATE": "2"}) == "True ['a b', '--flag=1'] 2"


def test_system_malloc_when_asked():
  assert _run({"MMTALKER_MALLOC": "system"}) == "False ['a b', '--flag=1'] None"


_CAP_PROBE = """
import ctypes
import numpy as np
from mmtalker_jax.allocator import manage_heap, out_of_memory

get = ctypes.CDLL(None).MallocExtension_GetNumericProperty
get.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t)]

def held_mib():  # heap pages the process holds: mapped minus handed back
  heap, unmapped = ctypes.c_size_t(), ctypes.c_size_t()
  get(b"generic.heap_size", ctypes.byref(heap))
  get(b"tcmalloc.pageheap_unmapped_bytes", ctypes.byref(unmapped))
  return (heap.value - unmapped.value) / 2**20

assert manage_heap(0.5)
# Blocks of growing size, each freed before the next: none fits in the freed
# one before it, so an uncapped heap grows for each (650 MiB or more held).
for mib in (300, 350, 400):
  block = np.ones(mib << 17)  # float64: mib MiB
  del block
held = held_mib()
try:
  np.ones(600 << 17)
  refused = None
except MemoryError as e:
  refused = out_of_memory(e)
# While a program compiles the cap is lifted, and it is back once it has compiled.
from jax import monitoring
from mmtalker_jax.allocator import _COMPILE
cap = ctypes.c_size_t()
monitoring.record_scalar(_COMPILE, 0.0)
get(b"tcmalloc.heap_limit_mb", ctypes.byref(cap))
lifted = cap.value
monitoring.record_event_duration_secs(_COMPILE, 1.0)
get(b"tcmalloc.heap_limit_mb", ctypes.byref(cap))
print(held <= 512, refused, lifted, cap.value)
"""


@pytest.mark.skipif(allocator.find_tcmalloc() is None or not sys.platform.startswith("linux"),
                    reason="no tcmalloc on this machine (apt-get install libtcmalloc-minimal4)")
def test_a_capped_heap_hands_free_pages_back_and_refuses_what_does_not_fit():
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  env.update(LD_PRELOAD=allocator.find_tcmalloc(), PYTHONPATH=ROOT,
             TCMALLOC_RELEASE_RATE="0", TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=str(1 << 40))
  proc = subprocess.run([sys.executable, "-c", _CAP_PROBE], env=env, capture_output=True,
                        text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.split() == ["True", "True", "0", "512"]
  # The same blocks uncapped: the heap holds more than the cap would allow.
  uncapped = _CAP_PROBE.replace("assert manage_heap(0.5)", "assert not manage_heap(0)").replace(
      "print(held <= 512, refused, lifted, cap.value)", "print(held > 600)")
  proc = subprocess.run([sys.executable, "-c", uncapped], env=env, capture_output=True,
                        text=True, timeout=60)
  assert proc.stdout.split() == ["True"], proc.stderr


def test_no_cap_without_tcmalloc():
  if allocator.running_under_tcmalloc():
    pytest.skip("this process runs under tcmalloc")
  assert not allocator.manage_heap(1.0)
  assert allocator.out_of_memory(MemoryError())
  assert allocator.out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8 bytes."))
  assert not allocator.out_of_memory(RuntimeError("INTERNAL: something else"))
