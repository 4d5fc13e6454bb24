"""Damage done to a saved checkpoint, for the tests of what restore makes of it."""

import os

import jax
import numpy as np

from cli_runs import saved_state


def overwrite_4_kib_silently(workdir: str, step: int) -> list[str]:
  """Overwrites 4 KiB with random bytes inside the largest file of checkpoint `step` (its
  size unchanged) at a place where Orbax alone still restores the checkpoint without an
  error, with changed values: the silent case. Orbax compresses arrays with zstd, which has
  no checksum: damage to some places breaks decompression (an error Orbax raises), to others
  only changes the values read. Places from the middle outwards are tried. -> the names of
  the arrays whose values changed ('opt_state/1/0/mu/...')."""
  step_dir = os.path.join(workdir, "checkpoints", str(step))
  files = [os.path.join(d, f) for d, _, names in os.walk(step_dir) for f in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "rb") as f:
    original = f.read()
  before = jax.tree_util.tree_leaves_with_path(saved_state(workdir, step))
  size = len(original)
  for k, frac in enumerate((0.5, 0.4, 0.6, 0.3, 0.7, 0.45, 0.55, 0.35, 0.65, 0.25, 0.75,
                            0.2, 0.8, 0.15, 0.85, 0.1)):
    at = min(int(size * frac), size - 4096)
    with open(largest, "r+b") as f:
      f.seek(at)
      f.write(np.random.default_rng(k).bytes(4096))
    assert os.path.getsize(largest) == size
    try:
      after = jax.tree.leaves(saved_state(workdir, step))
    except Exception:  # noqa: BLE001 (this place breaks decompression: try another)
      after = None
    if after is not None:
      changed = [_name(path) for (path, a), b in zip(before, after)
                 if np.asarray(a).tobytes() != np.asarray(b).tobytes()]
      if changed:
        return changed
    with open(largest, "wb") as f:
      f.write(original)
  raise AssertionError(f"no place in {largest} changes values without an Orbax error")


def _name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)
