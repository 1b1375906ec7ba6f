"""Joining a multi-process (multi-host) job: one call, failures in one line.

Every process runs the same command with --coordinator_address=HOST:PORT
(process 0's address), --num_processes=N and its own --process_id=I, or
--distributed where `jax.distributed.initialize()` discovers them itself
(Cloud TPU, SLURM). If a process dies, the others notice within
--heartbeat_seconds and stop (JAX's runtime aborts them with a message saying
another task died) instead of waiting forever; starting every process again
with the same command resumes from the last checkpoint. A process still
waiting for the others when --init_timeout_seconds ends stops with one line.
"""

from __future__ import annotations

import os
import socket
import threading

from absl import flags

from mmtalker_jax.errors import InputError, report

_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() "
                                 "and let it discover the processes (Cloud TPU, SLURM).")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_seconds", 30, "A process silent this long is "
                                  "taken for dead and the job stops.", lower_bound=5)
_INIT_TIMEOUT = flags.DEFINE_integer("init_timeout_seconds", 120, "How long to wait for every "
                                     "process to join.", lower_bound=5)


def requested() -> bool:
  return bool(_DISTRIBUTED.value or _COORDINATOR.value)


def initialize() -> None:
  """Joins the job the flags describe (nothing without them).

  Raises:
    InputError: a bad --num_processes/--process_id, a coordinator port already
      in use, or processes that never all joined.
  """
  if requested():
    join(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _HEARTBEAT.value,
         _INIT_TIMEOUT.value)


def join(address: str | None, n: int | None, i: int | None, heartbeat_seconds: int = 30,
         init_timeout_seconds: int = 120) -> None:
  """Joins process `i` of `n` to the job coordinated at `address` (None: discovered).

  Raises:
    InputError: as `initialize`.
  """
  import jax

  if address:
    if n is None or i is None:
      raise InputError("", "--coordinator_address needs --num_processes and --process_id")
    if n < 1 or not 0 <= i < n:
      raise InputError("", f"--process_id={i} must be in [0, --num_processes={n})")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
      raise InputError("", f"--coordinator_address={address} must be HOST:PORT")
    if i == 0 and _port_in_use(int(port)):
      raise InputError("", f"--coordinator_address={address}: port {port} is already in use "
                       "on this machine (another job's coordinator?); pick a free port")
  # Cross-process collectives on CPU devices (a no-op for accelerators).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # A process still waiting when the timeout ends would be aborted by JAX's
  # runtime with its own many-line message: stop just before, with one line.
  watchdog = threading.Timer(max(1.0, init_timeout_seconds - 1.0), _never_joined,
                             (address, n, i, init_timeout_seconds))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(address, n, i, initialization_timeout=init_timeout_seconds,
                               heartbeat_timeout_seconds=heartbeat_seconds,
                               shutdown_timeout_seconds=heartbeat_seconds)
    watchdog.cancel()
  except Exception as e:  # noqa: BLE001 (the runtime raises several types)
    watchdog.cancel()
    first = (str(e).strip().splitlines() or [""])[0][:200]
    raise InputError("", f"could not join the job at {address or 'the discovered coordinator'} "
                     f"as process {i} of {n} within {init_timeout_seconds} s ({first}); check "
                     "that every process was started with the same --num_processes and "
                     "--coordinator_address") from None
  if n is not None:
    _check_same_job_size(address, n)


def _never_joined(address: str | None, n: int | None, i: int | None, timeout: int) -> None:
  """Ends the process with one line (exit 2): the job did not form within `timeout` s."""
  report(InputError("", f"the job at {address or 'the discovered coordinator'} did not form "
                    f"within {timeout} s: process {i} waited for all {n} processes to join; "
                    "check that every process was started, with the same --num_processes "
                    "and --coordinator_address (--init_timeout_seconds waits longer)"))
  os._exit(2)


def _check_same_job_size(address: str | None, n: int) -> None:
  """Every process must have been started with the job's --num_processes.

  The coordinator takes its size from process 0; a process started with another
  --num_processes would otherwise train silently in a job of a different size.
  Every process gathers every process's flag and compares; all of them stop with
  one line.

  Raises:
    InputError: naming every process's --num_processes.
  """
  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  size = jax.process_count()
  flags_seen = multihost_utils.process_allgather(np.int32(n))  # [size], one per process
  declared = {j: int(v) for j, v in enumerate(np.asarray(flags_seen).reshape(-1))}
  if set(declared.values()) != {size}:
    flags = ", ".join(f"{v} (process {j})" for j, v in declared.items())
    raise InputError("", f"the job at {address} has {size} processes (process 0's "
                     f"--num_processes), but its processes were started with --num_processes="
                     f"{flags}; start every process with --num_processes={size}")


def _port_in_use(port: int) -> bool:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("", port))
    except OSError:
      return True
  return False

