"""A run that already finished is not run again: `completed` finds it and says so.

A workdir holds a finished run when it has the checkpoint of config.total_steps, the config
the run saved at its end (W/config.json, written after the final evaluation) with the same
total, and, unless evaluation was off, the evaluation of that step (W/eval/step_N.json).
Running the same command again then prints the stored final metrics and exits 0, without
evaluating again, redrawing pictures or adding event points; `--config.force_eval=True` (or
`python -m lang_image.evaluate --workdir=W`) evaluates again.
"""

from __future__ import annotations

import json

from absl import logging

from lang_image import saved_config, storage


def eval_path(workdir: str, step: int) -> str:
  return storage.join(workdir, "eval", f"step_{step:08d}.json")


def completed(config, workdir: str, evaluates: bool = True) -> dict | None:
  """The stored final metrics of a finished run in `workdir` ({} without evaluation), or
  None when there is work to do (or config.force_eval is set)."""
  if config.get("force_eval", False):
    return None
  total = int(config.total_steps)
  checkpoint = storage.join(workdir, "checkpoints", str(total))
  saved = storage.join(workdir, saved_config.FILE)
  if not (storage.path(checkpoint).is_dir() and storage.exists(saved)):
    return None
  try:
    if int(json.loads(storage.read_text(saved)).get("total_steps", -1)) != total:
      return None
  except (OSError, ValueError):
    return None
  metrics = {}
  if evaluates:
    path = eval_path(workdir, total)
    if not storage.exists(path):
      return None
    metrics = json.loads(storage.read_text(path))["metrics"]
  where = f" and its evaluation ({eval_path(workdir, total)})" if evaluates else ""
  logging.info("This run is already complete: %s holds the checkpoint of step %d of %d%s. "
               "Nothing to redo; --config.force_eval=True evaluates again (as does python -m "
               "lang_image.evaluate --workdir=%s).", workdir, total, total, where, workdir)
  return metrics
