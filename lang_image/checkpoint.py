"""Orbax checkpoints with exact resume.

Each checkpoint holds two items: `state` (params, optimizer state, step, rng, other model
variables) and `data` (the input position as JSON). Orbax writes into a temporary directory
and renames it when complete, so `latest_step` only ever names finished checkpoints; a run
killed mid-save resumes from the previous one. A finished checkpoint whose files were damaged
later (truncated, deleted) is skipped with a warning on restore, for the next older one.
"""

from __future__ import annotations

import errno
import shutil

import jax
import orbax.checkpoint as ocp
from absl import logging

from lang_image import storage
from lang_image.errors import ConfigError, TrainingError


class Checkpointer:

  def __init__(self, workdir: str, every: int, keep: int):
    # A local path made absolute, or a URL kept as one (never a local folder named 'gs:').
    self.directory = storage.join(workdir, "checkpoints")
    self.every = every
    self.keep = keep
    self._unreadable = set()  # Steps that failed to restore; a new save replaces them.
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=True,
            create=True,
        ),
    )

  def check_space(self, abstract_state) -> None:
    """Raises ConfigError if the disk cannot hold the checkpoints this run will keep (plus
    the one being written), so that a full disk is found before training, not hours in."""
    if storage.is_remote(self.directory):
      return  # Cloud storage has no fixed capacity to check.
    size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state))
    count = max(1, self.keep + 1 - len(self._manager.all_steps()))
    need, free = count * size, shutil.disk_usage(self.directory).free
    if free < need:
      raise ConfigError(
          f"the disk of {self.directory} has {_size(free)} free but this run's checkpoints "
          f"need about {_size(need)} ({count} x {_size(size)}); free some space, lower "
          "config.keep_checkpoints or choose another --workdir.")

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state, step: int | None = None):
    """Returns (state, data_position) from the newest readable checkpoint, or None if there
    is none. A checkpoint that fails to restore is skipped with a warning naming its
    directory, for the next older one; a given `step` is restored or fails, without fallback.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying the target shardings, so
    restoring onto another mesh reshards on load.
    """
    if step is not None:
      return self._restore(abstract_state, step)
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      try:
        return self._restore(abstract_state, step)
      except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many kinds)
        self._unreadable.add(step)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        logging.warning("Checkpoint %s cannot be restored (%s: %s); skipping it for an older "
                        "one.", storage.join(self.directory, str(step)), type(e).__name__,
                        reason)
    if steps:
      logging.warning("None of the checkpoints in %s can be restored: starting from scratch.",
                      self.directory)
    return None

  def _restore(self, abstract_state, step: int):
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
    ))
    logging.info("Resumed from checkpoint step %d in %s.", step, self.directory)
    return restored["state"], restored["data"]

  def due(self, step: int) -> bool:
    """Whether `maybe_save` saves at `step` unforced."""
    return self.every > 0 and step % self.every == 0

  def maybe_save(self, step: int, state, data_position, *, force: bool = False) -> bool:
    """Saves asynchronously every `every` steps (or when forced); returns whether it saved.
    `data_position`: the input position (JSON), or a function returning it, called only when
    saving (it may be a collective over processes)."""
    if not force and not self.due(step):
      return False
    if step in self._unreadable:  # A damaged checkpoint of this step gives way to a good one.
      self._manager.delete(step)
      self._unreadable.discard(step)
    elif step in self._manager.all_steps():
      return False
    if callable(data_position):
      data_position = data_position()
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_position),
      ), force=True)
    except Exception as e:  # noqa: BLE001 (an earlier async save may fail here too)
      self._raise_if_disk_full(e)
      raise
    return True

  def wait(self, quiet: bool = False) -> None:
    """Waits for the saves in flight; `quiet` logs a failure instead of raising it (for a
    run that is already stopping with an error)."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      if not quiet:
        self._raise_if_disk_full(e)
        raise
      logging.warning("A checkpoint save failed: %s", e)

  def _raise_if_disk_full(self, error: BaseException) -> None:
    """A save that failed for want of space becomes one TrainingError sentence; the newest
    complete checkpoint is untouched (Orbax renames a checkpoint into place only when
    complete)."""
    seen = error
    while seen is not None:
      if (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)) or (
          "No space left on device" in str(seen) or "Disk quota exceeded" in str(seen)):
        steps = [s for s in self._manager.all_steps() if s not in self._unreadable]
        newest = f"step {max(steps)}" if steps else "none yet"
        raise TrainingError(
            f"the disk of {self.directory} is full, so a checkpoint could not be written "
            f"(newest complete checkpoint: {newest}); free some space or lower "
            "config.keep_checkpoints, then run the same command to resume.") from None
      seen = seen.__cause__ or seen.__context__

  def close(self) -> None:
    self._manager.close()


def _size(n: int) -> str:
  return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
