"""Orbax checkpoints with exact resume.

Each checkpoint holds two items: `state` (params, optimizer state, step, rng, other model
variables) and `data` (the input position as JSON). Orbax writes into a temporary directory
and renames it when complete, so `latest_step` only ever names finished checkpoints; a run
killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:

  def __init__(self, workdir: str, every: int, keep: int):
    self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    self.every = every
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            enable_async_checkpointing=True,
            create=True,
        ),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state, step: int | None = None):
    """Returns (state, data_position) from the newest checkpoint, or None if there is none.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying the target shardings, so
    restoring onto another mesh reshards on load.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
    ))
    logging.info("Resumed from checkpoint step %d in %s.", step, self.directory)
    return restored["state"], restored["data"]

  def maybe_save(self, step: int, state, data_position: dict, *, force: bool = False) -> bool:
    """Saves asynchronously every `every` steps (or when forced); returns whether it saved."""
    if not force and (self.every <= 0 or step % self.every):
      return False
    if step in self._manager.all_steps():
      return False
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_position),
    ), force=True)
    return True

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
