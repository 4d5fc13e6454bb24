"""Multi-process start-up: `initialize()` runs once, before anything touches jax devices.

Where the process layout comes from (the first that applies wins):

  explicit  LANG_IMAGE_NUM_PROCESSES (> 1), LANG_IMAGE_PROCESS_ID and LANG_IMAGE_COORDINATOR
            (host:port of process 0), set by a launcher such as launch/local.py.
  slurm     inside an `srun` step with SLURM_NTASKS > 1. jax reads the rest itself:
            coordinator = first node of the step (port from the job id, or
            JAX_COORDINATOR_PORT), process id = SLURM_PROCID, and one GPU per task, the
            one numbered SLURM_LOCALID.
  ompi      under Open MPI's mpirun with OMPI_COMM_WORLD_SIZE > 1 (one GPU per rank).
  tpu       on a Cloud TPU VM: jax reads the worker list and this worker's number from
            the TPU metadata server (GCE) or TPU_WORKER_HOSTNAMES / TPU_WORKER_ID (GKE).
            A single-host TPU VM then runs as one process.

Otherwise there is one process and nothing happens. LANG_IMAGE_DISTRIBUTED=off turns the
automatic detection (slurm, ompi, tpu) off; the explicit variables still apply.
LANG_IMAGE_INIT_TIMEOUT (seconds, default 300) bounds the wait for the other processes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Mapping

from absl import logging

from lang_image.errors import ConfigError

COORDINATOR = "LANG_IMAGE_COORDINATOR"
NUM_PROCESSES = "LANG_IMAGE_NUM_PROCESSES"
PROCESS_ID = "LANG_IMAGE_PROCESS_ID"
SWITCH = "LANG_IMAGE_DISTRIBUTED"
TIMEOUT = "LANG_IMAGE_INIT_TIMEOUT"

# What jax's own Slurm detection requires (jax/_src/clusters/slurm_cluster.py); outside an
# srun step (e.g. in the batch script itself) SLURM_STEP_NODELIST is missing.
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID")


@dataclasses.dataclass(frozen=True)
class Plan:
  """How this process joins the job: `source` is 'single', 'explicit', 'slurm', 'ompi' or 'tpu'."""
  source: str
  num_processes: int | None = None  # None: jax detects it (tpu).
  process_id: int | None = None
  coordinator: str | None = None
  timeout: int = 300

  @property
  def multi(self) -> bool:
    return self.source != "single"


def detect(environ: Mapping[str, str] | None = None, on_cloud_tpu: bool | None = None) -> Plan:
  """The plan for this process's environment; raises ConfigError on inconsistent variables."""
  env = os.environ if environ is None else environ
  timeout = _positive_int(env, TIMEOUT, default=300)
  if env.get(NUM_PROCESSES, "").strip():
    return _explicit(env, timeout)
  for name in (COORDINATOR, PROCESS_ID):
    if env.get(name, "").strip():
      raise ConfigError(f"{name} is set but {NUM_PROCESSES} is not; set {NUM_PROCESSES} to "
                        f"the number of processes, or unset {name}.")
  switch = env.get(SWITCH, "auto").strip().lower()
  if switch in ("off", "0", "false", "no"):
    return Plan("single", timeout=timeout)
  if switch not in ("auto", "on", "1", "true", "yes", ""):
    raise ConfigError(f"{SWITCH}={env[SWITCH]!r} is not understood; set it to 'auto' "
                      "(detect SLURM, Open MPI and TPU pods) or 'off'.")
  if all(v in env for v in SLURM_VARS):
    count = _positive_int(env, "SLURM_NTASKS")
    if count > 1:
      return Plan("slurm", count, _index(env, "SLURM_PROCID", count), timeout=timeout)
  if "OMPI_MCA_orte_hnp_uri" in env and "OMPI_COMM_WORLD_SIZE" in env:
    count = _positive_int(env, "OMPI_COMM_WORLD_SIZE")
    if count > 1:
      return Plan("ompi", count, _index(env, "OMPI_COMM_WORLD_RANK", count), timeout=timeout)
  if on_cloud_tpu is None:
    on_cloud_tpu = _on_cloud_tpu_vm()
  if on_cloud_tpu:
    return Plan("tpu", timeout=timeout)
  return Plan("single", timeout=timeout)


def initialize(environ: Mapping[str, str] | None = None) -> Plan:
  """Joins the multi-process job this process belongs to, if any, and logs which process it is."""
  plan = detect(environ)
  if not plan.multi:
    logging.info("Single process (set %s or run under SLURM, mpirun or a TPU pod for more).",
                 NUM_PROCESSES)
    return plan
  import jax
  kwargs = dict(initialization_timeout=plan.timeout)
  if plan.source == "explicit":
    kwargs.update(coordinator_address=plan.coordinator, num_processes=plan.num_processes,
                  process_id=plan.process_id)
    # jax aborts the whole process (no exception) when the coordinator cannot be reached.
    if plan.process_id == 0:
      _check_port_free(plan)
    else:
      _wait_for_coordinator(plan)
  where = plan.coordinator or "the address jax detects"
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # jax raises assorted runtime errors, e.g. for a port it cannot bind.
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    me = "" if plan.process_id is None else f" as process {plan.process_id} of {plan.num_processes}"
    raise ConfigError(f"could not join the {plan.source} multi-process job{me} through the "
                      f"coordinator at {where} within {plan.timeout} s ({detail}); check that "
                      "every process was started with the same settings and that process 0's "
                      "host and port are reachable from this one.") from None
  logging.info("Process %d of %d (%s, coordinator %s): %d of %d devices are local.",
               jax.process_index(), jax.process_count(), plan.source, _coordinator(plan),
               jax.local_device_count(), jax.device_count())
  return plan


def _coordinator(plan: Plan) -> str:
  """The address jax connected to (it may have detected it), for the log line."""
  try:
    from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
    return jax_distributed.global_state.coordinator_address or plan.coordinator or "?"
  except (ImportError, AttributeError):
    return plan.coordinator or "?"


def _check_port_free(plan: Plan) -> None:
  port = int(plan.coordinator.rpartition(":")[2])
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("", port))
    except OSError as e:
      raise ConfigError(f"process 0 cannot serve as coordinator on port {port} "
                        f"({e.strerror or e}); pick a free port in {COORDINATOR} "
                        "(launch/local.py picks one itself).") from None


def _wait_for_coordinator(plan: Plan) -> None:
  host, _, port = plan.coordinator.rpartition(":")
  host = host.strip("[]")
  deadline = time.monotonic() + plan.timeout
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=5):
        return
    except OSError as e:
      if time.monotonic() > deadline:
        raise ConfigError(
            f"process {plan.process_id} of {plan.num_processes} could not reach the "
            f"coordinator at {plan.coordinator} within {plan.timeout} s ({e.strerror or e}); "
            f"start process 0 with the same {COORDINATOR}, and check that its host and port "
            "are reachable from this one.") from None
      time.sleep(1)


def _explicit(env, timeout: int) -> Plan:
  count = _positive_int(env, NUM_PROCESSES)
  if count == 1:
    return Plan("single", timeout=timeout)
  if not env.get(PROCESS_ID, "").strip():
    raise ConfigError(f"{NUM_PROCESSES}={count} needs {PROCESS_ID} (0 to {count - 1}, "
                      "different in every process); set it, as launch/local.py does.")
  index = _index(env, PROCESS_ID, count)
  coordinator = env.get(COORDINATOR, "").strip()
  host, sep, port = coordinator.rpartition(":")
  if not coordinator:
    raise ConfigError(f"{NUM_PROCESSES}={count} needs {COORDINATOR}, the host:port of "
                      "process 0 that every process can reach; set it, e.g. "
                      f"{COORDINATOR}=10.0.0.1:12355.")
  if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
    raise ConfigError(f"{COORDINATOR}={coordinator!r} is not host:port; give process 0's "
                      f"address and a free port, e.g. {COORDINATOR}=10.0.0.1:12355.")
  return Plan("explicit", count, index, coordinator, timeout)


def _positive_int(env, name: str, default: int | None = None) -> int:
  raw = env.get(name, "").strip()
  if not raw and default is not None:
    return default
  try:
    value = int(raw)
  except ValueError:
    value = 0
  if value < 1:
    raise ConfigError(f"{name}={raw!r} is not a positive integer; set it to a whole number "
                      "of at least 1.")
  return value


def _index(env, name: str, count: int) -> int:
  raw = env.get(name, "").strip()
  try:
    value = int(raw)
  except ValueError:
    value = -1
  if not 0 <= value < count:
    raise ConfigError(f"{name}={raw!r} is not a process index for {count} processes; set it "
                      f"to a whole number from 0 to {count - 1}, different in every process.")
  return value


def _on_cloud_tpu_vm() -> bool:
  """Whether jax found TPU chips and libtpu at import (it never starts a backend for this)."""
  try:
    from jax._src import cloud_tpu_init  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return bool(getattr(cloud_tpu_init, "running_in_cloud_tpu_vm", False))
