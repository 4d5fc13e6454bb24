"""Runs main.py as N cooperating processes on this machine, each with K forced CPU devices.

    python launch/local.py --processes=2 --devices=4 -- \\
        --config=configs/clip.py --workdir=/tmp/clip_2x4

Every process gets JAX_PLATFORMS=cpu, XLA_FLAGS=--xla_force_host_platform_device_count=K and
LANG_IMAGE_COORDINATOR / LANG_IMAGE_NUM_PROCESSES / LANG_IMAGE_PROCESS_ID, so main.py joins
one job of N * K devices: the multi-host code paths (per-process input slices, global
arrays, gloo collectives, multi-process checkpoints) on one machine. With N > 1 the
persistent compilation cache is switched off (JAX_ENABLE_COMPILATION_CACHE=false): on
jax 0.10.2, a multi-process CPU train step loaded from it computes wrong gradients. Process 0's output is
streamed here; the others' goes to --logdir/process_<i>.log. If any process fails, the
others are stopped and this exits with its status. --dry-run prints the commands instead.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_FLAG = "--xla_force_host_platform_device_count"


class LaunchError(Exception):
  """A bad launcher argument; the message names the problem and the fix."""


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="launch/local.py", description=__doc__.split("\n\n")[0],
      usage="%(prog)s [--processes=N] [--devices=K] [--port=P] [--dry-run] -- MAIN_ARGS...")
  parser.add_argument("--processes", type=int, default=2, help="processes to start (N).")
  parser.add_argument("--devices", type=int, default=4, help="CPU devices per process (K).")
  parser.add_argument("--port", type=int, default=0,
                      help="coordinator port on 127.0.0.1 (default: a free one).")
  parser.add_argument("--logdir", default="",
                      help="where processes 1..N-1 write their output (default: a new temp dir).")
  parser.add_argument("--main", default=os.path.join(ROOT, "main.py"), help="script to run.")
  parser.add_argument("--python", default=sys.executable, help="interpreter to run it with.")
  parser.add_argument("--dry-run", action="store_true",
                      help="print each process's environment and command; start nothing.")

  def error(message):
    raise LaunchError(f"{message}; see launch/local.py --help.")
  parser.error = error
  if "--" in argv:
    split = argv.index("--")
    own, main_args = argv[:split], argv[split + 1:]
  else:
    own, main_args = argv, []
  args = parser.parse_args(own)
  args.main_args = main_args
  if args.processes < 1:
    raise LaunchError(f"--processes={args.processes} is not a process count; give at least 1, "
                      "e.g. --processes=2.")
  if args.devices < 1:
    raise LaunchError(f"--devices={args.devices} is not a device count; give at least 1 CPU "
                      "device per process, e.g. --devices=4.")
  if not 0 <= args.port < 65536:
    raise LaunchError(f"--port={args.port} is not a TCP port; give one from 1 to 65535, or "
                      "leave it out to pick a free one.")
  if not main_args:
    raise LaunchError("no arguments for main.py; put them after '--', e.g. "
                      "launch/local.py --processes=2 -- --config=configs/clip.py --workdir=/tmp/w.")
  return args


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(base: dict, index: int, count: int, devices: int, port: int) -> dict:
  """The variables that differ from `base` for process `index` of `count`."""
  flags = [f for f in base.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
  env = {
      "JAX_PLATFORMS": "cpu",
      "XLA_FLAGS": " ".join(flags + [f"{DEVICE_FLAG}={devices}"]),
      "LANG_IMAGE_COORDINATOR": f"127.0.0.1:{port}",
      "LANG_IMAGE_NUM_PROCESSES": str(count),
      "LANG_IMAGE_PROCESS_ID": str(index),
  }
  if count > 1:
    # jax 0.10.2 on CPU: a multi-process step loaded from the persistent compilation cache
    # computes wrong gradients or aborts (see launch/README.md), so every process compiles.
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
  return env


def commands(args, port: int, base: dict | None = None):
  """[(changed env, argv)] for every process."""
  base = dict(os.environ) if base is None else base
  argv = [args.python, args.main, *args.main_args]
  return [(process_env(base, i, args.processes, args.devices, port), argv)
          for i in range(args.processes)]


def render(env: dict, argv: list) -> str:
  return " ".join([f"{k}={shlex.quote(v)}" for k, v in env.items()] +
                  [shlex.quote(a) for a in argv])


class _Stopped(Exception):
  """This launcher got SIGTERM or SIGHUP."""

  def __init__(self, signum):
    super().__init__(signum)
    self.signum = signum


def _raise_stopped(signum, frame):
  del frame
  raise _Stopped(signum)


def _die_with_parent():
  """In the child: get SIGTERM when the launcher dies, even by SIGKILL (Linux only)."""
  try:
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def run(args, port: int) -> int:
  logdir = args.logdir or tempfile.mkdtemp(prefix="lang_image_local_")
  os.makedirs(logdir, exist_ok=True)
  procs, logs = [], []
  for sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, _raise_stopped)
  try:
    for i, (env, argv) in enumerate(commands(args, port)):
      if i == 0:
        out = None
      else:
        logs.append(os.path.join(logdir, f"process_{i}.log"))
        out = open(logs[-1], "w")
      procs.append(subprocess.Popen(argv, env=dict(os.environ, **env), stdout=out,
                                    stderr=None if out is None else subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent))
      if out is not None:
        out.close()
    if args.processes > 1:
      others = "process 1" if args.processes == 2 else f"processes 1-{args.processes - 1}"
      print(f"launch/local.py: {args.processes} processes x {args.devices} CPU devices, "
            f"coordinator 127.0.0.1:{port}; output of {others} in {logdir}",
            file=sys.stderr, flush=True)
    failed = wait_all(procs)
  except KeyboardInterrupt:
    stop(procs)
    return 128 + signal.SIGINT
  except _Stopped as e:
    stop(procs)
    return 128 + e.signum
  if failed is None:
    return 0
  index, code = failed
  stop(procs)
  if index > 0:
    with open(logs[index - 1], errors="replace") as f:
      tail = f.read().splitlines()[-30:]
    for line in tail:
      print(f"[process {index}] {line}", file=sys.stderr)
  where = "" if index == 0 else f"; its output is in {logs[index - 1]}"
  if code > 0:
    how = f"exited with status {code}"
  else:
    how = f"was killed by {_signal_name(-code)}"
    code = 128 - code
  print(f"error: process {index} of {args.processes} {how}{where}.", file=sys.stderr)
  return code


def _signal_name(signum: int) -> str:
  try:
    return signal.Signals(signum).name
  except ValueError:
    return f"signal {signum}"


def wait_all(procs):
  """None when all exit 0, else (index, status) of the first process that failed."""
  pending = set(range(len(procs)))
  while pending:
    for i in sorted(pending):
      code = procs[i].poll()
      if code is None:
        continue
      pending.discard(i)
      if code != 0:
        return i, code
    time.sleep(0.1)
  return None


def stop(procs, grace: float = 10.0) -> None:
  """SIGTERM to every still-running process group, SIGKILL after `grace` seconds."""
  for p in procs:
    if p.poll() is None:
      _signal(p, signal.SIGTERM)
  deadline = time.time() + grace
  for p in procs:
    try:
      p.wait(max(0.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
      _signal(p, signal.SIGKILL)
      p.wait()


def _signal(proc, sig) -> None:
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:
    pass


def main(argv=None) -> int:
  try:
    args = parse_args(sys.argv[1:] if argv is None else argv)
  except LaunchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  port = args.port or free_port()
  if args.dry_run:
    for i, (env, argv_i) in enumerate(commands(args, port)):
      print(f"# process {i} of {args.processes}")
      print(render(env, argv_i))
    return 0
  return run(args, port)


if __name__ == "__main__":
  sys.exit(main())
