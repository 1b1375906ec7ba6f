"""Running a test script in a fresh process that simulates 8 CPU devices."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_devices(n: int) -> dict:
  """This process's environment, with XLA simulating `n` CPU devices (other XLA flags kept)."""
  kept = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                  if not f.startswith("--xla_force_host_platform_device_count"))
  return {**os.environ, "XLA_FLAGS": f"{kept} --xla_force_host_platform_device_count={n}".strip()}


def run_on_eight_devices(source: str, path) -> dict:
  """Writes `source` to `path`, runs it with 8 simulated devices, and returns the
  JSON object on its last line of output (asserting a clean exit)."""
  path.write_text(source)
  proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT,
                        env=with_devices(8),
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])
