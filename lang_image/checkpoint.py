"""Orbax checkpoints with exact resume, checked on restore, and a last known-good state.

Each checkpoint holds three items: `state` (params, optimizer state, step, rng, other model
variables), `data` (the input position as JSON) and `integrity` (JSON: a checksum of every
array, a digest of the data position, and the run's non-finite streak at save time; see
lang_image/checkpoint_integrity.py). Orbax writes into a temporary directory and renames it
when complete, so only finished checkpoints are listed; a run killed mid-save resumes from the
previous one.

On restore, the newest checkpoint that can be read, matches its checksums and holds only
finite values is used; any other is skipped with one warning naming it and what failed.

A checkpoint is known-good when no step before it had been skipped as non-finite (streak 0).
Periodic saves wait while the latest step is non-finite, rotation never deletes the newest
known-good checkpoint, and a state holding NaN or infinity is never saved. A save that fails
(permission, read-only or full disk, quota, network file system) stops the run at the next
step with one TrainingError sentence; no further save is started, so nothing waits on
Orbax's timeouts, and the checkpoints already there are left as they were.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable

import jax
import orbax.checkpoint as ocp
from absl import logging

from lang_image import checkpoint_errors as errors
from lang_image import checkpoint_integrity as integrity
from lang_image import checkpoint_storage as folder_checks
from lang_image import storage
from lang_image.errors import ConfigError, TrainingError


@dataclasses.dataclass
class _NewestAndLastGood:
  """Orbax preservation policy: the `keep` newest checkpoints and the newest known-good one.
  Orbax deletes the others only once the save being made has completed."""

  keep: int
  is_good: Callable[[int], bool]

  def should_preserve(self, checkpoints, *, context):
    del context
    steps = [c.step for c in checkpoints]
    kept = set(sorted(steps)[-self.keep:])
    good = [s for s in steps if self.is_good(s)]
    if good:
      kept.add(max(good))
    return [s in kept for s in steps]


class Checkpointer:

  def __init__(self, workdir: str, every: int, keep: int):
    # A local path made absolute, or a URL kept as one (never a local folder named 'gs:').
    self.directory = storage.join(workdir, "checkpoints")
    self.every = every
    self.keep = keep
    self.nonfinite_streak = 0  # That of the restored checkpoint.
    self._unreadable = set()  # Steps that failed to restore; a new save replaces them.
    self._streaks = {}  # step -> non-finite streak at save time (None: not recorded).
    self._postponed = False  # A periodic save waits for a finite step.
    self._in_flight = None  # The step being saved in the background.
    self._failed = False  # A save failed (and was reported).
    self._summarizer = None
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
          enable_async_checkpointing=True, create=True,
          # Directories made in the save call: one that cannot be made fails there, instead
          # of leaving Orbax's writer threads waiting minutes for it in the background.
          async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
          preservation_policy=_NewestAndLastGood(keep, self._known_good)))
    except OSError as e:
      cause, fix = errors.write_cause(e)
      raise ConfigError(f"the checkpoint folder {self.directory} cannot be created ({cause}); "
                        f"{fix} or choose another --workdir.") from None

  def prepare_to_save(self, abstract_state) -> None:
    """Before training: raises ConfigError if the folder cannot be written or its disk cannot
    hold the checkpoints this run will keep (plus the one being written), so that neither is
    found hours in; removes what unfinished saves left; starts compiling the checksum
    programs in the background. (Only a training run calls this: an evaluation reading the
    checkpoints of a live run must not remove the save it is making.)"""
    folder_checks.check_writable(self.directory)
    if jax.process_index() == 0:
      folder_checks.remove_unfinished_saves(self.directory)
    count = max(1, self.keep + 1 - len(self._manager.all_steps()))
    folder_checks.check_space(self.directory, abstract_state, count)
    if self._summarizer is None:
      self._summarizer = integrity.Summarizer(abstract_state)

  def restore(self, abstract_state, step: int | None = None):
    """Returns (state, data_position) from the newest checkpoint that passes its checks, or
    None if there is none; `nonfinite_streak` then holds its streak. A checkpoint that fails
    is skipped with a warning naming it and what failed, for the next older one; a given
    `step` is restored or raises ConfigError, without fallback.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying the target shardings, so
    restoring onto another mesh reshards on load (the checksums do not depend on sharding).
    """
    if self._summarizer is None:
      self._summarizer = integrity.Summarizer(abstract_state)
    if step is not None:
      restored, problem = self._restore(abstract_state, step)
      if problem:
        raise ConfigError(f"checkpoint {self._path(step)} {problem}; choose another step.")
      return restored
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      restored, problem = self._restore(abstract_state, step)
      if not problem:
        return restored
      self._unreadable.add(step)
      logging.warning("Checkpoint %s %s; skipping it for an older one.", self._path(step),
                      problem)
    if steps:
      logging.warning("None of the checkpoints in %s can be restored: starting from scratch.",
                      self.directory)
    return None

  def _restore(self, abstract_state, step: int):
    """-> ((state, data_position), None), or (None, what failed: a phrase)."""
    items = {"state": ocp.args.StandardRestore(abstract_state), "data": ocp.args.JsonRestore()}
    recorded = storage.path(storage.join(self._path(step), "integrity")).is_dir()
    if recorded:
      items["integrity"] = ocp.args.JsonRestore()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many kinds)
      return None, f"cannot be read: {errors.read_problem(e)}"
    record = restored["integrity"] if recorded else None
    checksums, nonfinite = self._summarizer.summarize(restored["state"])
    problem = integrity.problem(record, checksums, nonfinite, restored["data"])
    if problem:
      return None, problem
    if record is None:
      logging.warning("Checkpoint %s has no checksums (an older format): restored unchecked.",
                      self._path(step))
    self.nonfinite_streak = int((record or {}).get("nonfinite_streak", 0))
    self._streaks[step] = self.nonfinite_streak if record else None
    logging.info("Resumed from checkpoint step %d in %s.", step, self.directory)
    return (restored["state"], restored["data"]), None

  def due(self, step: int) -> bool:
    """Whether `maybe_save` saves at `step` unforced (if the latest step was finite)."""
    return self._postponed or (self.every > 0 and step % self.every == 0)

  def maybe_save(self, step: int, state, data_position, *, force: bool = False,
                 nonfinite_streak: int = 0) -> bool:
    """Saves asynchronously every `every` steps (or when forced); returns whether it saved.
    Called every step: a background save that failed raises TrainingError here.

    `data_position`: the input position (JSON), or a function returning it, called only when
    saving (it may be a collective over processes). `nonfinite_streak`: how many steps in a
    row up to `step` were skipped as non-finite; an unforced save waits for a finite step.
    A state holding NaN or infinity is not saved: TrainingError."""
    if self._in_flight is not None and not self._manager.is_saving_in_progress():
      self._finish_save()
    if not force and not self.due(step):
      return False
    if nonfinite_streak and not force:
      if not self._postponed:
        logging.warning("Step %d was skipped as non-finite: the checkpoint due now waits for "
                        "the next finite step.", step)
      self._postponed = True
      return False
    if step in self._unreadable:  # A damaged checkpoint of this step gives way to a good one.
      self._finish_save()
      self._manager.delete(step)
      self._unreadable.discard(step)
    elif step in self._manager.all_steps():
      return False
    if callable(data_position):
      data_position = data_position()
    if self._summarizer is None:
      self._summarizer = integrity.Summarizer()
    checksums, nonfinite = self._summarizer.summarize(state)
    if nonfinite:
      raise TrainingError(
          f"the state at step {step} holds NaN or infinite values ({integrity.names(nonfinite)}),"
          f" so it was not saved; lower config.optim.lr or check the data, then rerun to "
          f"{self.resume_hint()}.")
    self._finish_save()  # Orbax would wait for it too; a failure is reported first.
    self._streaks[step] = int(nonfinite_streak)
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_position),
          integrity=ocp.args.JsonSave(integrity.record(checksums, data_position,
                                                       nonfinite_streak)),
      ), force=True)
    except Exception as e:  # noqa: BLE001 (a failure to start writing)
      raise self._save_failed(e, step) from None
    self._in_flight, self._postponed = step, False
    return True

  def _finish_save(self) -> None:
    """Waits for the save in flight; a failure becomes one TrainingError sentence."""
    step, self._in_flight = self._in_flight, None
    if step is None:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many kinds)
      raise self._save_failed(e, step) from None

  def _save_failed(self, error: BaseException, step: int) -> TrainingError:
    self._failed = True
    self._streaks.pop(step, None)
    cause, fix = errors.write_cause(error)
    logging.info("The save of step %d failed: %r", step, error)
    return TrainingError(
        f"the checkpoint of step {step} could not be written to {self.directory} ({cause}); "
        f"the checkpoints already there are intact ({self._newest_phrase(exclude=step)}): "
        f"{fix}, then run the same command to resume.")

  def wait(self, quiet: bool = False) -> None:
    """Waits for the save in flight; `quiet` logs a failure instead of raising it (for a
    run that is already stopping with an error)."""
    try:
      self._finish_save()
    except TrainingError as e:
      if not quiet:
        raise
      logging.warning("%s", e)

  def resume_hint(self) -> str:
    """What a rerun resumes from, as a phrase after 'then rerun to' (saves in flight are
    waited for first)."""
    self.wait(quiet=True)
    steps = [s for s in self._manager.all_steps() if s not in self._unreadable]
    if not steps:
      return "start from scratch (no checkpoint has been saved)"
    newest = max(steps)
    good = [s for s in steps if self._known_good(s)]
    if newest in good:
      return (f"resume from checkpoint step {newest} ({self._path(newest)}), the newest, saved "
              "while training was finite")
    older = (f"the newest saved while training was finite is step {max(good)} "
             f"({self._path(max(good))})") if good else "none was saved while it was finite"
    return (f"resume from checkpoint step {newest} ({self._path(newest)}), saved after "
            f"{self._streak(newest)} non-finite steps in a row; {older}")

  def _known_good(self, step: int) -> bool:
    return step not in self._unreadable and self._streak(step) == 0

  def _streak(self, step: int) -> int | None:
    """The non-finite streak recorded with a checkpoint (None: not recorded or unreadable)."""
    if step not in self._streaks:
      try:
        self._streaks[step] = int(json.loads(storage.read_text(
            storage.join(self._path(step), "integrity", "metadata")))["nonfinite_streak"])
      except (OSError, ValueError, KeyError, TypeError):
        self._streaks[step] = None
    return self._streaks[step]

  def _newest_phrase(self, exclude: int) -> str:
    steps = [s for s in self._manager.all_steps() if s != exclude and s not in self._unreadable]
    return f"newest: step {max(steps)}" if steps else "there are none yet"

  def _path(self, step: int) -> str:
    return storage.join(self.directory, str(step))

  def close(self) -> None:
    try:
      self._manager.close()
    except Exception:  # noqa: BLE001 (a failed save raises again here; it was reported)
      if not self._failed:
        raise
