"""What a checkpoint carries to prove on restore that it holds what was saved.

Every array of the train state gets a 64-bit checksum, computed where the array lies (on its
devices, no host copy) in one pass over the state: each word (the element's bits as an
unsigned integer of its item size, widened to 32 bits) is combined with its flat index and
mixed by MurmurHash3's 32-bit finaliser, and the mixed words are summed modulo 2**32, in two
lanes with different seeds. Integer addition is associative, so the checksum does not depend
on the sharding or on the order of the reduction: a state restored onto another mesh checks
against the same numbers. The finaliser is a bijection, so a change to one word always
changes its term; changes to many words escape both lanes with probability about 2**-64.

The same pass says which floating-point arrays hold a NaN or an infinity.

The record saved beside the state (JSON):

    {"format": 1, "checksums": {"params/towers/...": "0123456789abcdef", ...},
     "data": "<sha256 of the data position's JSON>", "nonfinite_streak": 0}
"""

from __future__ import annotations

import hashlib
import json
import threading

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

FORMAT = 1
_SEEDS = (0x243F6A88, 0x85A308D3)  # Digits of pi: any two different constants do.
_GOLDEN = np.uint32(0x9E3779B1)  # Odd, so multiplying by it is a bijection mod 2**32.


def array_name(path) -> str:
  """A tree path as 'params/towers/image/...'."""
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _fmix32(h):
  h = h ^ (h >> 16)
  h = h * np.uint32(0x85EBCA6B)
  h = h ^ (h >> 13)
  h = h * np.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def _words(x):
  """The bits of `x` as uint32 words (64-bit items give two words each)."""
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  size = x.dtype.itemsize
  if size == 8:
    return jax.lax.bitcast_convert_type(x, jnp.uint32)
  unsigned = {4: jnp.uint32, 2: jnp.uint16, 1: jnp.uint8}[size]
  return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)


def _flat_index(shape):
  """Each element's row-major index modulo 2**32, without materialising a long arange."""
  index = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(len(shape))):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, shape, dim) * np.uint32(stride % 2**32)
    stride *= shape[dim]
  return index


@jax.jit
def _leaf_summary(x):
  """-> uint32 [3]: the two checksum lanes, and 1 if every element is finite (else 0).
  Jitted per leaf, not for the whole state: a program per distinct shape, dtype and
  sharding compiles in a fraction of the time one program for hundreds of arrays takes, and
  the work stays on the devices holding each array (only scalars are reduced across them)."""
  words = _words(x)
  keyed = words * _GOLDEN + _flat_index(words.shape) * np.uint32(0x27D4EB2F)
  lanes = [jnp.sum(_fmix32(keyed + np.uint32(s)), dtype=jnp.uint32) for s in _SEEDS]
  finite = jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.array(True)
  return jnp.stack([*lanes, finite.astype(jnp.uint32)])


def _signature(x):
  return (tuple(x.shape), jnp.dtype(x.dtype), getattr(x, "sharding", None))


class Summarizer:
  """Checksums and finiteness of train states of one structure (`summarize`).

  Compiling the per-array programs takes a few seconds on a CPU; given the abstract state,
  they are compiled at once in a background thread (XLA compiles without holding the GIL),
  so that the first save does not wait for them.
  """

  def __init__(self, abstract_state=None):
    self._compiled = {}
    self._thread = None
    if abstract_state is not None:
      leaves = jax.tree.leaves(abstract_state)
      self._thread = threading.Thread(target=self._compile, args=(leaves,), daemon=True,
                                      name="checksum_compile")
      self._thread.start()

  def _compile(self, leaves):
    for leaf in leaves:
      key = _signature(leaf)
      if key[2] is not None and key not in self._compiled:
        try:
          self._compiled[key] = _leaf_summary.lower(leaf).compile()
        except Exception as e:  # noqa: BLE001 (the jitted path compiles it again when used)
          logging.info("Checksum program for %s not compiled ahead: %s", key[:2], e)

  def summarize(self, state) -> tuple[dict[str, str], list[str]]:
    """-> ({array name: 16 hex digits}, names of floating-point arrays holding NaN or inf).
    Waits for `state` to be computed, as a save does anyway."""
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    named = jax.tree_util.tree_leaves_with_path(state)
    # A result is replicated, so every process holds it. Within one process all programs are
    # dispatched before any is read; across processes each finishes before the next is
    # dispatched, since many programs in flight, each with a cross-process reduction, stalled
    # CPU (gloo) collectives.
    one_at_a_time = jax.process_count() > 1
    results = []
    for _, x in named:
      x = jnp.asarray(x)
      results.append(self._compiled.get(_signature(x), _leaf_summary)(x))
      if one_at_a_time:
        results[-1].block_until_ready()
    results = [np.asarray(r.addressable_data(0)) for r in results]
    names = [array_name(path) for path, _ in named]
    checksums = {n: f"{int(r[0]):08x}{int(r[1]):08x}" for n, r in zip(names, results)}
    return checksums, [n for n, r in zip(names, results) if not r[2]]


def data_digest(data_position) -> str:
  return hashlib.sha256(json.dumps(data_position, sort_keys=True).encode()).hexdigest()


def record(checksums: dict, data_position, nonfinite_streak: int) -> dict:
  return {"format": FORMAT, "checksums": checksums, "data": data_digest(data_position),
          "nonfinite_streak": int(nonfinite_streak)}


def problem(saved: dict | None, checksums: dict, nonfinite: list, data_position) -> str | None:
  """Why a restored checkpoint cannot be trusted, as a phrase that follows its name, or
  None. `saved`: its record (None for a checkpoint saved before records existed: only its
  finiteness is checked); `checksums`, `nonfinite`: `Summarizer.summarize` of what was
  restored."""
  if saved is not None:
    expected = saved.get("checksums", {})
    if set(expected) != set(checksums):
      return ("failed its integrity check: its checksums name other arrays than it holds "
              f"({len(expected)} against {len(checksums)})")
    differ = [n for n in checksums if checksums[n] != expected[n]]
    if differ:
      one = len(differ) == 1
      return (f"failed its integrity check: {_count(differ, len(checksums))} no longer "
              f"{'matches' if one else 'match'} the checksum saved with {'it' if one else 'them'}"
              f" ({names(differ)})")
    if saved.get("data") != data_digest(data_position):
      return "failed its integrity check: its data position differs from the one saved"
  if nonfinite:
    return (f"holds NaN or infinite values in {_count(nonfinite, len(checksums))} "
            f"({names(nonfinite)})")
  return None


def _count(names, total) -> str:
  return f"{len(names)} of its {total} arrays"


def names(items, most: int = 3) -> str:
  """'a, b, c and 2 more'."""
  shown = ", ".join(items[:most])
  return shown + (f" and {len(items) - most} more" if len(items) > most else "")
