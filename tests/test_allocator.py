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
import time
import numpy as np
from mmtalker_jax.allocator import heap_held_bytes, manage_heap

capped = manage_heap(0.5, every_seconds=0.02)
# Blocks of growing size, each freed before the next: none fits in the freed
# one before it, so an uncapped heap grows for each (650 MiB or more held).
for mib in (300, 350, 400):
  block = np.ones(mib << 17)  # float64: mib MiB
  del block
  time.sleep(0.2)
held = heap_held_bytes() / 2**20
big = np.ones(600 << 17)  # past the cap: allowed, the cap is soft
print(capped, round(held), float(big[-1]))
"""


@pytest.mark.skipif(allocator.find_tcmalloc() is None or not sys.platform.startswith("linux"),
                    reason="no tcmalloc on this machine (apt-get install libtcmalloc-minimal4)")
def test_a_capped_heap_hands_free_pages_back_and_refuses_nothing():
  env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
  env.update(LD_PRELOAD=allocator.find_tcmalloc(), PYTHONPATH=ROOT,
             TCMALLOC_RELEASE_RATE="0", TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD=str(1 << 40))

  def probe(source):
    proc = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    capped, held, value = proc.stdout.split()
    return capped, int(held), value

  capped, held, value = probe(_CAP_PROBE)
  assert (capped, value) == ("True", "1.0") and held <= 512
  # The same blocks uncapped: the heap holds more than the cap allows.
  capped, held, value = probe(_CAP_PROBE.replace("manage_heap(0.5,", "manage_heap(0,"))
  assert (capped, value) == ("False", "1.0") and held > 600


def test_no_cap_without_tcmalloc(monkeypatch):
  monkeypatch.setattr(allocator, "running_under_tcmalloc", lambda: False)
  assert not allocator.manage_heap(1.0)
  assert allocator.heap_held_bytes() is None


class CreditedHeap:
  """tcmalloc's ReleaseToSystem bookkeeping: whole spans go back, and what one
  request released beyond its size is credited against the next requests,
  which release nothing until the credit is used up."""

  def __init__(self, held, free_spans):
    self.held, self.free_spans, self.credit, self.calls = held, list(free_spans), 0, 0

  def release(self, n):
    self.calls += 1
    if n <= self.credit:
      self.credit -= n
      return
    n -= self.credit
    released = 0
    while released < n and self.free_spans:
      released += self.free_spans.pop()
    self.held -= released
    self.credit = max(released - n, 0)


def test_the_cap_asks_again_when_a_credit_swallowed_the_request():
  heap = CreditedHeap(held=1100, free_spans=[50, 60, 70])
  heap.credit = 120  # left by an earlier release of a large span
  allocator.trim_to_cap(1000, lambda: heap.held, heap.release)
  assert heap.held <= 1000 and heap.calls == 2  # the first request only used up the credit
  calls = heap.calls
  allocator.trim_to_cap(1000, lambda: heap.held, heap.release)
  assert heap.calls == calls  # within the cap: nothing asked
  # Bounded: a heap that cannot shrink is asked `tries` times, no more.
  stuck = CreditedHeap(held=2000, free_spans=[])
  allocator.trim_to_cap(1000, lambda: stuck.held, stuck.release, tries=3)
  assert stuck.calls == 3 and stuck.held == 2000
