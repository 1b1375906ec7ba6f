"""Progress on the terminal and metrics in <workdir>/metrics.jsonl."""

from __future__ import annotations

import json
import os
import sys
import time

from mmtalker_jax import fileio


class Progress:
  """A one-line progress bar (a line per report when stdout is not a terminal)."""

  def __init__(self, total: int, start: int = 0, width: int = 24):
    self.total, self.width = total, width
    self.tty = sys.stdout.isatty()
    self.last_step, self.last_time = start, time.perf_counter()

  def report(self, step: int, text: str, frames: int) -> tuple[float, float]:
    """Shows `text` at `step`; returns (steps/s, mesh frames/s) since the last report."""
    now = time.perf_counter()
    dt = max(now - self.last_time, 1e-9)
    rate = (step - self.last_step) / dt
    fps = frames / dt
    self.last_step, self.last_time = step, now
    done = int(self.width * step / max(self.total, 1))
    bar = "#" * done + "." * (self.width - done)
    line = f"[{bar}] {step}/{self.total} {text} | {rate:.2f} steps/s {fps:.0f} frames/s"
    if self.tty:
      sys.stdout.write("\r" + line + "\033[K")
    else:
      sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return rate, fps

  def message(self, text: str) -> None:
    sys.stdout.write(("\n" if self.tty else "") + text + "\n")
    sys.stdout.flush()


class MetricsLog:
  """Appends one JSON object per line; values are Python floats, keys sorted."""

  def __init__(self, path: str):
    self.path = path

  def truncate_after(self, step: int) -> None:
    """Drops entries past `step` (a resumed run recomputes them identically)."""
    if not os.path.isfile(self.path):
      return
    with open(self.path, encoding="utf-8") as f:
      kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    fileio.write_text(self.path, "".join(kept))

  def write(self, step: int, values: dict) -> None:
    record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
