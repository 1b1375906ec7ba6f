"""The evaluation table and its JSON."""

from __future__ import annotations

import json
import math

from mmtalker_jax import fileio
from mmtalker_jax.training.evaluation import METRICS

_SCALE_OF = {"lve": "lve", "eve": "eve", "fdd": "fdd", "fdd_abs": "fdd", "mve": "mve"}
_TITLE = {"lve": "LVE", "eve": "EVE", "fdd": "FDD", "fdd_abs": "|FDD|", "mve": "MVE"}


def scales(scale_cfg) -> dict[str, float]:
  return {k: float(scale_cfg.get(_SCALE_OF[k], 1.0)) for k in METRICS}


def rows(result: dict) -> list[str]:
  """The table's rows: the entries of `result` that hold metrics, in order."""
  return [k for k, v in result.items() if isinstance(v, dict)]


def table(result: dict, scale: dict[str, float]) -> str:
  """The metrics of every row in the reporting scale, one line per row."""
  width = max(16, max(len(r) for r in rows(result)) + 2)
  head = f"{'':<{width}}" + "".join(
      f"{_TITLE[k] + ' x' + _exp(scale[k]):>14}" for k in METRICS)
  lines = [head]
  for row in rows(result):
    cells = "".join(f"{_fmt(result[row][k] * scale[k]):>14}" for k in METRICS)
    lines.append(f"{row.replace('_', ' '):<{width}}{cells}")
  return "\n".join(lines)


def _exp(s: float) -> str:
  e = -round(math.log10(s)) if s > 0 else 0
  return f"1e{e}"


def _fmt(v: float) -> str:
  return "n/a" if math.isnan(v) else f"{v:.4f}"


def _numbers(row: dict) -> dict:
  return {k: (None if math.isnan(v) else v) for k, v in row.items()}


def write_json(path: str, result: dict, scale: dict, split: str, step: int,
               **extra) -> None:
  """The table's numbers, unscaled, with the scale, split, sequence count and step."""
  out = {row: _numbers(result[row]) for row in rows(result)}
  out.update(scale=scale, split=split, sequences=result["sequences"], step=step, **extra)
  fileio.write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")


def write_sweep_json(path: str, result: dict, scale: dict, split: str,
                     settings: dict[str, dict], steps: dict[str, int]) -> None:
  """A sweep's table: {'members': {name: {metrics..., 'settings', 'step'}}, baselines, ...}."""
  out = {"members": {name: {**_numbers(result[name]), "settings": settings[name],
                            "step": steps[name]} for name in settings}}
  out.update({row: _numbers(result[row]) for row in rows(result) if row not in settings})
  out.update(scale=scale, split=split, sequences=result["sequences"])
  fileio.write_text(path, json.dumps(out, indent=2, sort_keys=True) + "\n")
