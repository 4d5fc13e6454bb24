"""Checks of the checkpoint folder made before training, so that a folder that cannot hold
the run's checkpoints is found in seconds, not at the first save hours in."""

from __future__ import annotations

import os
import shutil

import jax

from lang_image import checkpoint_errors as errors
from lang_image.errors import ConfigError


def check_writable(directory: str) -> None:
  """Raises ConfigError naming the folder and the cause (permission denied, a read-only file
  system, ...) if a file cannot be written, synced and removed there by this process."""
  probe = os.path.join(directory, f".write_probe_{jax.process_index()}")
  try:
    with open(probe, "wb") as f:
      f.write(b"lang_image")
      f.flush()
      os.fsync(f.fileno())
    os.remove(probe)
  except OSError as e:
    cause, fix = errors.write_cause(e)
    raise ConfigError(f"the checkpoint folder {directory} cannot be written ({cause}), so "
                      f"this run could not save its progress; {fix} or choose another "
                      "--workdir, then run the same command.") from None


def remove_unfinished_saves(directory: str) -> None:
  """Removes the temporary folders of saves that failed or were killed, freeing their space.
  Only for a training run: an evaluation reading the checkpoints of a live run must not
  remove the save it is making."""
  for name in os.listdir(directory):
    if ".orbax-checkpoint-tmp" in name:
      shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def check_space(directory: str, abstract_state, count: int) -> None:
  """Raises ConfigError if the disk of `directory` cannot hold `count` more checkpoints of
  `abstract_state`."""
  size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state))
  need, free = count * size, shutil.disk_usage(directory).free
  if free < need:
    raise ConfigError(
        f"the disk of {directory} has {_size(free)} free but this run's checkpoints need "
        f"about {_size(need)} ({count} x {_size(size)}); free some space, lower "
        "config.keep_checkpoints or choose another --workdir.")


def _size(n: int) -> str:
  return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
