"""Statistics of the global batch, whether an array holds all of it or one device's rows.

Every objective is written once, against these helpers, and runs two ways
(`config.loss_impl`):

  "global"     the arrays are the whole global batch [B, ...] (`axis=None`); under `jax.jit`
               XLA partitions the computation over the mesh as it sees fit.
  "shard_map"  the loss runs inside `jax.shard_map` and each device holds its own rows
               [B_local, ...] of the batch; `axis` names the mesh axes the batch is split
               over, and the helpers combine devices with collectives (psum, all_gather,
               ppermute). Device d holds global rows [d B_local, (d + 1) B_local).

With `axis=None` each helper reduces to the plain array operation, so both ways share one
implementation of the math.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Axis = str | tuple[str, ...] | None


def num_shards(axis: Axis) -> int:
  return 1 if axis is None else jax.lax.axis_size(axis)


def shard_index(axis: Axis) -> jax.Array:
  return jnp.zeros((), jnp.int32) if axis is None else jax.lax.axis_index(axis)


def global_size(local: jax.Array, axis: Axis) -> int:
  """B, the global batch size, from the local rows."""
  return local.shape[0] * num_shards(axis)


def row_offset(local: jax.Array, axis: Axis) -> jax.Array:
  """The global index of this device's first row."""
  return shard_index(axis) * local.shape[0]


def batch_sum(x: jax.Array, axis: Axis) -> jax.Array:
  """Sum over the global batch (dimension 0)."""
  total = jnp.sum(x, axis=0)
  return total if axis is None else jax.lax.psum(total, axis)


def batch_mean(x: jax.Array, axis: Axis) -> jax.Array:
  return batch_sum(x, axis) / global_size(x, axis)


def batch_max(x: jax.Array, axis: Axis) -> jax.Array:
  top = jnp.max(x, axis=0)
  return top if axis is None else jax.lax.pmax(top, axis)


def batch_logsumexp(x: jax.Array, axis: Axis) -> jax.Array:
  """log sum_b exp(x_b) over the global batch (dimension 0), stably."""
  shift = jax.lax.stop_gradient(batch_max(x, axis))
  return jnp.log(batch_sum(jnp.exp(x - shift), axis)) + shift


def gather(x: jax.Array, axis: Axis) -> jax.Array:
  """The global batch [B, ...] from the local rows; gradients flow back to their owners."""
  return x if axis is None else jax.lax.all_gather(x, axis, axis=0, tiled=True)


def next_rows(x: jax.Array, axis: Axis, count: int = 1) -> jax.Array:
  """The `count` rows that follow this device's rows in the global batch, cyclically (the
  last device receives the first rows): one ppermute of `count` rows."""
  if axis is None:
    return x[:count]
  n = num_shards(axis)
  return jax.lax.ppermute(x[:count], axis, perm=[(d, (d - 1) % n) for d in range(n)])


def roll_up(x: jax.Array, axis: Axis) -> jax.Array:
  """Row b of the result is global row b + 1 (the last row gets row 0): jnp.roll(x, -1, 0)
  of the global batch."""
  return jnp.concatenate([x[1:], next_rows(x, axis)], axis=0)


def local_rows(global_array: jax.Array, local_count: int, axis: Axis) -> jax.Array:
  """This device's rows of an array computed identically on every device for the global
  batch (e.g. random numbers drawn for all B samples)."""
  if axis is None:
    return global_array
  start = shard_index(axis) * local_count
  return jax.lax.dynamic_slice_in_dim(global_array, start, local_count, axis=0)

