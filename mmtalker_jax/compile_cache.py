"""Compile once per machine: JAX's persistent compilation cache, on by default.

train.py, evaluate.py and predict.py keep XLA's compiled programs in
--compile_cache (default: $MMTALKER_COMPILE_CACHE, else
$JAX_COMPILATION_CACHE_DIR, else ~/.cache/mmtalker_jax/xla), so a second call
with inputs of the same shapes loads programs instead of compiling them.
Inputs are padded to length buckets (config.decode.length_bucket,
config.data.bucket_frames), so files of similar length share programs.
`--nocompile_cache` (or an empty --compile_cache) turns the cache off.

`CompileLog` counts what a process compiled and how long it spent tracing and
compiling, from JAX's own monitoring events. The folder holds nothing but
JAX's own entries: nothing read from it is unpickled by this package.
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

_DIR = flags.DEFINE_string(
    "compile_cache", None, "Folder of XLA's persistent compilation cache (default: "
    "$MMTALKER_COMPILE_CACHE, $JAX_COMPILATION_CACHE_DIR or ~/.cache/mmtalker_jax/xla); "
    "--nocompile_cache disables it.")

_OFF = "--nocompile_cache"
MAX_BYTES = 4 << 30  # least recently used programs are evicted beyond this


def default_dir() -> str:
  for var in ("MMTALKER_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR"):
    if os.environ.get(var):
      return os.environ[var]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "mmtalker_jax", "xla")


def rewrite_argv(argv: list[str]) -> list[str]:
  """absl string flags have no --noX form: --nocompile_cache means --compile_cache=''."""
  return ["--compile_cache=" if a == _OFF else a for a in argv]


def enable(path: str | None = None) -> str | None:
  """Points JAX's persistent cache at `path` (default: the flag's folder).

  Every program is cached, however quick to compile: prediction compiles many
  small ones. Our folders keep at most MAX_BYTES (least recently used first
  out); a folder shared through JAX's own $JAX_COMPILATION_CACHE_DIR keeps
  JAX's settings for its size, since entries other programs wrote there carry
  no LRU bookkeeping and JAX warns on every one of them in LRU mode. An
  unwritable folder only disables the cache (with a note).

  Returns:
    The folder in use, or None when the cache is off.
  """
  if path is None:
    path = default_dir() if _DIR.value is None else _DIR.value
  if not path:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    print(f"note: compilation cache off, cannot create {path} ({e.strerror})")
    return None
  import jax

  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  if path != os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return path


@dataclasses.dataclass
class CompileLog:
  """What this process compiled: programs loaded from the cache, compiled, and the time spent.

  Listens to JAX's monitoring events from `start()` on (listeners cannot be
  removed; one log per process).
  """
  programs: int = 0
  cache_hits: int = 0
  trace_seconds: float = 0.0
  lower_seconds: float = 0.0
  compile_seconds: float = 0.0  # backend compile, or loading from the cache

  def start(self) -> "CompileLog":
    from jax import monitoring

    def on_event(event: str, **kwargs) -> None:
      del kwargs
      if event == "/jax/compilation_cache/cache_hits":
        self.cache_hits += 1

    def on_duration(event: str, seconds: float, **kwargs) -> None:
      del kwargs
      if event == "/jax/core/compile/jaxpr_trace_duration":
        self.trace_seconds += seconds
      elif event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
        self.lower_seconds += seconds
      elif event == "/jax/core/compile/backend_compile_duration":
        self.programs += 1
        self.compile_seconds += seconds

    monitoring.register_event_listener(on_event)
    monitoring.register_event_duration_secs_listener(on_duration)
    return self

  def summary(self) -> str:
    return (f"compile {self.compile_seconds:.2f} s ({self.programs - self.cache_hits} programs "
            f"compiled, {self.cache_hits} loaded from the cache), trace+lower "
            f"{self.trace_seconds + self.lower_seconds:.2f} s")
