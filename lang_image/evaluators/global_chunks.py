"""Host data (every process holds all of it) as padded, batch-sharded global chunks.

The evaluators run the model on global arrays, the way training does: each chunk of
`batch_size` rows is split over the batch axes of the mesh; the last one is padded with
copies of its last row, and the number of real rows says what to keep.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils

from lang_image.evaluators import eval_sets


def global_chunks(data, batch_size: int, sharding) -> Iterator[tuple[jax.Array, int]]:
  """(global chunk [batch_size, ...], its number of real rows) for an array or an
  `eval_sets.ImageStream`, in order."""
  for chunk in eval_sets.image_chunks(data, batch_size):
    rows = len(chunk)
    if rows < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - rows, axis=0)])
    # Every process holds the whole eval set, so each fills its own shards from it.
    yield jax.make_array_from_callback(chunk.shape, sharding, lambda idx, c=chunk: c[idx]), rows


def to_host(x: jax.Array) -> np.ndarray:
  """A global array's value on every process."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
