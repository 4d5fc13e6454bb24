"""A small trainer, two saved states and helpers, for the checkpoint tests."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from lang_image import checkpoint, parallel
from lang_image.trainer import Trainer
from test_train import VOCAB, pico_towers, small_config  # noqa: F401 (an autouse fixture)


@pytest.fixture(scope="module")
def trainer():
  mesh = parallel.make_mesh(ConfigDict(dict(data=1, fsdp=1)), devices=jax.devices()[:1])
  return Trainer(small_config(), mesh, VOCAB)


@pytest.fixture(scope="module")
def states(trainer):
  """Two states of random values, as trained weights are (arrays of zeros would be stored
  in a few compressed bytes)."""
  first = trainer.init_state(0)
  keys = iter(jax.random.split(jax.random.key(1), 2 * len(jax.tree.leaves(first))))

  def noisy(x):
    if jnp.issubdtype(x.dtype, jnp.floating):
      return x + jax.random.normal(next(keys), x.shape, x.dtype)
    return x + 1
  first = jax.tree.map(noisy, first)
  return first, jax.tree.map(noisy, first)


def two_checkpoints(tmp_path, states):
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  assert ckpt.maybe_save(1, states[0], {"next": 1}) and ckpt.maybe_save(2, states[1], {"next": 2})
  ckpt.wait()
  ckpt.close()
  return os.path.join(str(tmp_path), "checkpoints")


def restore_warns(trainer, tmp_path, caplog):
  """-> (restored state, data position, the warnings logged while restoring)."""
  ckpt = checkpoint.Checkpointer(str(tmp_path), every=1, keep=3)
  caplog.clear()
  with caplog.at_level("WARNING"):
    state, data = ckpt.restore(trainer.abstract_state)
  ckpt.close()
  return state, data, [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def assert_bitwise(a_tree, b_tree):
  for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree), strict=True):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
