"""What a run says while it works: phases, a heartbeat, live training progress.

- `phase("Training the tokenizer")`: announces a phase, and says how long it took.
- `watch()`: for the length of a run, a heartbeat thread says which phase is running (with
  its count, e.g. scenes rendered, where the phase keeps one) whenever no line was printed for
  `HEARTBEAT_S` seconds, so that a run is never silent for long.
- `Progress`: training progress. On a terminal a progress bar redrawn in place (step, loss
  per term, steps/s, pairs/s, ETA); otherwise (a log file) a short line every `LINE_S`
  seconds; and at every log step a line of the interval means, with counters such as skipped
  samples only when non-zero.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import sys
import threading
import time

from absl import logging

HEARTBEAT_S = 9.0
LINE_S = 8.0
BAR_S = 0.5


class _State:
  def __init__(self):
    self.lock = threading.Lock()
    self.last_line = time.monotonic()
    self.phases: list[list] = []  # [name, start, counter or None]
    self.bar_shown = False
    self.silent = False  # set for the processes of a job that are not the first


_STATE = _State()


def say(message: str, *args) -> None:
  """An INFO line through absl's handler, whatever the verbosity a library set meanwhile
  (nothing on a job's other processes: one voice)."""
  if _STATE.silent:
    return
  logger = logging.get_absl_logger()
  record = logger.makeRecord(logger.name, std_logging.INFO, __file__, 0, message, args, None)
  logging.get_absl_handler().handle(record)


class _Watch(std_logging.Filter):
  """Notes when a line was last printed; clears a progress bar before a line is printed."""

  def filter(self, record):
    if _STATE.bar_shown:
      sys.stderr.write("\r\033[K")
      _STATE.bar_shown = False
    _STATE.last_line = time.monotonic()
    return True


class Counter:
  """A count a phase advances (`add`), shown by the heartbeat as 'done/total unit'."""

  def __init__(self, total: int, unit: str):
    self.total, self.unit, self.done = int(total), unit, 0

  def add(self, n: int = 1) -> None:
    self.done += n

  def __str__(self):
    return f"{self.done}/{self.total} {self.unit}"


@contextlib.contextmanager
def phase(name: str, counter: Counter | None = None, quiet_end: bool = False):
  """Announces `name`, keeps it as the heartbeat's phase, and says when it ends and how long
  it took. Yields a dict whose 'note' the end line appends."""
  start = time.monotonic()
  entry = [name, start, counter]
  extra = {"note": ""}
  say("%s ...", name)
  with _STATE.lock:
    _STATE.phases.append(entry)
  try:
    yield extra
  finally:
    with _STATE.lock:
      _STATE.phases.remove(entry)
  if not quiet_end:
    say("%s: done in %.1f s%s.", name, time.monotonic() - start, extra["note"])


@contextlib.contextmanager
def watch(silent: bool = False):
  """The heartbeat, for the length of a run (see the module docstring); `silent` (a job's
  other processes) says nothing for the length of the run."""
  _STATE.silent = silent
  handler = logging.get_absl_handler()
  watcher = _Watch()
  handler.addFilter(watcher)
  _STATE.last_line = time.monotonic()
  stop = threading.Event()

  def beat():
    while not stop.wait(1.0):
      now = time.monotonic()
      with _STATE.lock:
        current = _STATE.phases[-1] if _STATE.phases else None
      if current is not None and now - _STATE.last_line >= HEARTBEAT_S:
        name, start, counter = current
        counted = f": {counter}" if counter is not None else ""
        say("... still %s%s (%.0f s so far)", name[0].lower() + name[1:], counted, now - start)

  thread = threading.Thread(target=beat, name="lang_image-heartbeat", daemon=True)
  thread.start()
  try:
    yield
  finally:
    stop.set()
    thread.join()
    handler.removeFilter(watcher)
    _STATE.silent = False
    with _STATE.lock:  # A run stopped early leaves its training entry behind.
      _STATE.phases[:] = [p for p in _STATE.phases if not isinstance(p[2], Progress)]
    if _STATE.bar_shown:
      sys.stderr.write("\n")
      _STATE.bar_shown = False


def loss_notes(objectives) -> list[str]:
  """Sentences on how to read the loss of these objective terms (where it can go negative)."""
  notes = []
  nclip = objectives.get("nclip") if hasattr(objectives, "get") else None
  if nclip is not None and nclip.get("anti_collapse", "me_max") == "me_max":
    notes.append(
        "nclip/loss is a cross-entropy minus me_max_weight x the entropy of the batch-mean "
        "prototype distribution (up to log K), so it, and the total loss, can be negative; "
        "lower is still better. nclip/mean_entropy_ratio near 0 means the prototypes "
        "collapsed.")
  return notes


def _duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _losses(values: dict) -> str:
  total = values.get("loss")
  terms = {k[:-len("/loss")]: v for k, v in sorted(values.items()) if k.endswith("/loss")}
  text = f"loss {total:.4g}" if total is not None else "loss -"
  if len(terms) > 1 or (terms and total is None):
    text += " (" + ", ".join(f"{k} {v:.4g}" for k, v in terms.items()) + ")"
  return text


class Progress:
  """Training progress from step `start` to `total` (see the module docstring). Call it after
  every step with that step's metrics (device arrays; read only when shown)."""

  def __init__(self, start: int, total: int, batch_size: int, log_every: int = 0, stream=None,
               tty=None, clock=time.monotonic):
    self.start, self.total, self.batch, self.log_every = start, total, batch_size, log_every
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty() if tty is None else tty
    self._clock = clock
    self.step = start
    self._entry = None
    self._t0 = None  # time and step after the first (compiling) step
    self._shown = 0.0

  def __str__(self):
    return f"step {self.step}/{self.total} dispatched"

  def _rates(self, step: int, now: float):
    if self._t0 is None:
      return None, None
    t0, step0 = self._t0
    elapsed = now - t0
    if step <= step0 or elapsed <= 0:
      return None, None
    rate = (step - step0) / elapsed
    return rate, (self.total - step) / rate

  def line(self, step: int, values: dict, extra: dict | None = None, now=None) -> str:
    rate, eta = self._rates(step, self._clock() if now is None else now)
    parts = [f"step {step}/{self.total} ({100 * step / self.total:.0f}%)", _losses(values)]
    if rate is not None:
      parts.append(f"{rate:.2f} steps/s, {rate * self.batch:.0f} pairs/s, ETA {_duration(eta)}")
    counters = {k: v for k, v in (extra or {}).items() if v}
    if counters:
      parts.append(", ".join(f"{k} {v:g}" for k, v in sorted(counters.items())))
    return " | ".join(parts)

  def __call__(self, step: int, metrics) -> None:
    now = self._clock()
    self.step = step
    if self._t0 is None:
      self._t0 = (now, step)  # Rates start after the first step, which compiles.
      # While steps run, the heartbeat speaks of them when no line came for a while (steps
      # are dispatched ahead of the device, so a slow step can hold the next line back).
      self._entry = ["Training", time.monotonic(), self]
      with _STATE.lock:
        _STATE.phases.append(self._entry)
    if step == self.total:
      with _STATE.lock:
        if self._entry in _STATE.phases:
          _STATE.phases.remove(self._entry)
    log_step = step == self.total or bool(self.log_every and step % self.log_every == 0)
    if not self.tty and log_step:
      return  # `interval` prints this step's line.
    if now - self._shown < (BAR_S if self.tty else LINE_S) and step != self.total:
      return
    self._shown = now
    import jax  # noqa: PLC0415
    values = {k: float(v) for k, v in jax.device_get(metrics).items()
              if k == "loss" or k.endswith("/loss")}
    text = self.line(step, values, now=now)
    if self.tty and not _STATE.silent:
      width = 30
      filled = int(width * step / self.total)
      self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K")
      self.stream.flush()
      _STATE.bar_shown = True
      _STATE.last_line = now
    else:
      say("%s", text)

  def interval(self, step: int, means: dict, counters: dict) -> None:
    """The line of a log step: the interval's mean losses, rates, collapse monitors (nCLIP's
    mean-entropy ratio) and non-zero counters."""
    now = self._shown = self._clock()
    monitors = {k: v for k, v in means.items() if k.endswith("mean_entropy_ratio")}
    say("%s", self.line(step, means, {**monitors, **counters}, now=now) + " | log-interval means")


# Metrics named in the one-line summary of an evaluation (all of them go to W/eval/ and
# TensorBoard), with their short names.
SUMMARY = (("zero_shot/top1", "zero-shot top1"), ("zero_shot/top1_seen", "seen"),
           ("zero_shot/top1_unseen", "unseen"), ("zero_shot/top5", "top5"),
           ("retrieval/i2t_r1", "i2t R@1"), ("retrieval/t2i_r1", "t2i R@1"),
           ("retrieval/i2t_r10", "i2t R@10"), ("retrieval/t2i_r10", "t2i R@10"),
           ("linear_probe/top1", "linear probe top1"), ("knn/top1", "kNN top1"))


def eval_summary(metrics: dict) -> str:
  """The main eval metrics (percent) on one short line."""
  return ", ".join(f"{short} {metrics[k]:.1f}" for k, short in SUMMARY if k in metrics)
