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
