"""Checks of the checkpoint folder made before training, so that a folder that cannot hold
the run's checkpoints is found in seconds, not at the first save hours in. The folder may be
a URL (lang_image/storage.py): it is then probed with an object written and removed, and has
no fixed capacity to check."""

from __future__ import annotations

import os
import shutil

import jax

from lang_image import checkpoint_errors as errors
from lang_image import storage
from lang_image.errors import ConfigError


def check_writable(directory: str) -> None:
  """Raises ConfigError naming the folder and the cause (permission denied, a read-only file
  system, ...) if a file cannot be written, synced and removed there by this process."""
  probe = storage.join(directory, f".write_probe_{jax.process_index()}")
  if storage.is_remote(directory):
    try:
      storage.write_bytes(probe, b"lang_image")
      storage.path(probe).unlink()
    except Exception as e:  # noqa: BLE001 (assorted errors from cloud clients)
      reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
      raise ConfigError(f"the checkpoint folder {directory} cannot be written ({reason}), so "
                        "this run could not save its progress; check the bucket's permissions "
                        "or choose another --workdir, then run the same command.") from None
    return
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
  for name in storage.listdir(directory):
    if ".orbax-checkpoint-tmp" in name:
      if storage.is_remote(directory):
        storage.path(storage.join(directory, name)).rmtree(missing_ok=True)
      else:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def check_space(directory: str, abstract_state, count: int) -> None:
  """Raises ConfigError if the disk of `directory` cannot hold `count` more checkpoints of
  `abstract_state`."""
  if storage.is_remote(directory):
    return  # Cloud storage has no fixed capacity to check.
  size = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state))
  need, free = count * size, shutil.disk_usage(directory).free
  if free < need:
    raise ConfigError(
        f"the disk of {directory} has {_size(free)} free but this run's checkpoints need "
        f"about {_size(need)} ({count} x {_size(size)}); free some space, lower "
        "config.keep_checkpoints or choose another --workdir.")


def _size(n: int) -> str:
  return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
