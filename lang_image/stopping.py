"""What stops a training run early: a preemption signal, or non-finite steps that persist.

Both are observed by the loop in lang_image/train.py once per step.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from lang_image.errors import TrainingError


class StopSignals:
  """Within `with`: SIGTERM and SIGINT set `requested` (handlers can only be installed from
  the main thread; elsewhere nothing is installed). The first signal puts the previous
  handlers back, so a second one acts as it would have without the run; so does leaving."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc_info):
    self._restore()

  def _handle(self, signum, frame):
    del frame
    self.requested = True
    self._restore()
    logging.warning("%s received: stopping after this step with a checkpoint.",
                    signal.Signals(signum).name)

  def _restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    self._previous = {}

  def agreed(self) -> bool:
    """Whether to stop now. With several processes, whether any of them was signalled: a
    small all-gather that every process makes after every step, so that all stop (and save)
    at the same step. It waits for the step to finish, which costs only the dispatch gap."""
    if jax.process_count() == 1:
      return self.requested
    flags = multihost_utils.process_allgather(np.int32(self.requested))
    return bool(np.any(flags))


class NonfiniteGuard:
  """Counts consecutive skipped (non-finite) steps on the host; raises TrainingError after
  `limit` of them in a row (0: never). `streak`: the count the run resumes with (it is saved
  with each checkpoint, so a rerun does not start it again from zero). `resume_hint()`: what
  a rerun resumes from, as a phrase after 'then rerun to' (Checkpointer.resume_hint)."""

  def __init__(self, limit: int, streak: int = 0,
               resume_hint: Callable[[], str] | None = None):
    self.limit, self.consecutive = int(limit), int(streak)
    self._resume_hint = resume_hint or (lambda: "resume from the newest checkpoint")

  def observe(self, step: int, flag) -> None:
    if not float(flag):
      self.consecutive = 0
      return
    self.consecutive += 1
    logging.warning("Step %d: non-finite loss or gradient norm; its update was skipped.", step)
    if self.limit and self.consecutive >= self.limit:
      raise TrainingError(
          f"the last {self.consecutive} steps (up to step {step}) all had a non-finite loss "
          "or gradient norm, so training stopped without saving them; lower "
          "config.optim.lr, check the data or raise config.max_nonfinite_steps (0 never "
          f"stops), then rerun to {self._resume_hint()}.")
