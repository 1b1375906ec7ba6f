"""Compile once per machine: JAX's persistent compilation cache, on by default.

train.py, evaluate.py and predict.py keep XLA's compiled programs in
--compile_cache (default: $MMTALKER_COMPILE_CACHE, else
$JAX_COMPILATION_CACHE_DIR, else ~/.cache/mmtalker_jax/xla), so a second call
with inputs of the same shapes loads programs instead of compiling them.
Inputs are padded to length buckets (config.decode.length_bucket,
config.data.bucket_frames), so files of similar length share programs.
`--nocompile_cache` (or an empty --compile_cache) turns the cache off.

`CompileLog` counts what a process compiled and how long it spent tracing and
compiling, from JAX's own monitoring events. `ExecutableStore` keeps whole
executables for predict.py, which then skips tracing and lowering as well.
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
      elif event == EXECUTABLE_HIT:  # a whole executable loaded: no trace, no compile
        self.programs += 1
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


EXECUTABLE_HIT = "/mmtalker/executable_cache/hits"  # a monitoring event CompileLog counts


def source_fingerprint() -> str:
  """A hash of this package's source and the versions that shape a compiled program."""
  import hashlib

  import flax
  import jax
  import jaxlib

  digest = hashlib.sha256()
  root = os.path.dirname(os.path.abspath(__file__))
  for folder, dirs, files in sorted(os.walk(root)):
    dirs.sort()
    for name in sorted(files):
      if name.endswith(".py"):
        digest.update(name.encode())
        with open(os.path.join(folder, name), "rb") as f:
          digest.update(f.read())
  devices = jax.devices()
  digest.update(repr((jax.__version__, jaxlib.__version__, flax.__version__,
                      devices[0].platform, devices[0].device_kind, len(devices),
                      os.environ.get("XLA_FLAGS", ""))).encode())
  return digest.hexdigest()


class ExecutableStore:
  """Compiled programs kept on disk whole, so a later process skips tracing too.

  JAX's persistent cache saves the backend compile, but each process still
  traces and lowers every program to find its key (about 0.5 s for
  prediction's three). Here the key is everything that decides the program
  without tracing it: `salt` (the caller's: this package's source, library
  versions and devices via `source_fingerprint`, plus the model's config),
  the program's name, and the shapes, dtypes and shardings of its arguments.
  An entry that cannot be read or run is compiled again and rewritten.
  An entry is written only once, loaded back, it has run to completion: an
  executable JAX loaded from its own cache serialises without some of its
  functions on the CPU ("Function ... not found" when run), and turning that
  cache off around the compile only works in a process that has not used it
  yet (JAX decides once per process).

  Args:
    folder: where entries live (the compilation cache folder).
    salt: a string naming everything else the programs depend on.
  """

  def __init__(self, folder: str, salt: str):
    self.folder = folder
    self.salt = salt
    self._loaded: dict[str, object] = {}

  def _key(self, name: str, args) -> str:
    import hashlib

    import jax

    leaves, tree = jax.tree_util.tree_flatten(args)
    parts = [self.salt, name, str(tree)]
    for x in leaves:
      sharding = getattr(x, "sharding", None)
      parts.append(f"{jax.typeof(x)}|{sharding}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]

  def __call__(self, name: str, jitted, *args):
    """jitted(*args), from a stored executable when there is one."""
    key = self._key(name, args)
    compiled = self._loaded.get(key)
    if compiled is not None:
      return compiled(*args)
    compiled = self._load(name, key)
    if compiled is not None:
      out = _run_to_completion(compiled, args)
      if out is not None:
        self._loaded[key] = compiled
        return out
      # An entry that loads but cannot run: compile again (and rewrite it).
    compiled, out = self._compile(name, key, jitted, args)
    self._loaded[key] = compiled
    return compiled(*args) if out is None else out

  def _path(self, name: str, key: str) -> str:
    return os.path.join(self.folder, f"mmtalker-exec-{name}-{key}.bin")

  def _load(self, name: str, key: str):
    import pickle

    from jax import monitoring
    from jax.experimental import serialize_executable

    path = self._path(name, key)
    if not os.path.isfile(path):
      return None
    try:
      with open(path, "rb") as f:
        blob = pickle.load(f)
      compiled = serialize_executable.deserialize_and_load(*blob)
    except Exception:  # noqa: BLE001 (a damaged or foreign entry: compile again)
      return None
    monitoring.record_event(EXECUTABLE_HIT)
    return compiled

  def _compile(self, name: str, key: str, jitted, args):
    """(executable, its output on args if the stored entry was checked by running it, else None)."""
    import pickle

    import jax
    from jax.experimental import serialize_executable

    from mmtalker_jax import fileio

    lowered = jitted.lower(*args)
    before = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
      compiled = lowered.compile()
    finally:
      jax.config.update("jax_enable_compilation_cache", before)
    try:
      blob = serialize_executable.serialize(compiled)
      # Kept only if the entry, loaded back, runs (see the class docstring).
      out = _run_to_completion(serialize_executable.deserialize_and_load(*blob), args)
    except Exception:  # noqa: BLE001 (not serialisable: run on without an entry)
      return compiled, None
    if out is not None:
      try:
        with fileio.atomic_path(self._path(name, key)) as tmp:
          with open(tmp, "wb") as f:
            pickle.dump(blob, f)
      except Exception:  # noqa: BLE001 (not picklable, or the folder unwritable: run on)
        pass
    return compiled, out


def _run_to_completion(compiled, args):
  """compiled(*args) once it has finished, or None if it fails. Execution is
  asynchronous: an executable with missing functions fails when its output
  is read, not when it is called."""
  import jax

  try:
    return jax.block_until_ready(compiled(*args))
  except Exception:  # noqa: BLE001 (a broken executable, whatever XLA raises)
    return None
