"""Scaling features of the train step: FSDP sharding rules, GradCache accumulation,
rematerialisation and bfloat16 compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from lang_image import parallel
from lang_image.data import pipeline
from lang_image.trainer import Trainer
from tests.test_train import (NCLIP_SMALL, VOCAB, pico_towers, run_steps,  # noqa: F401
                              small_config, synthetic_batch)


def mesh(data, fsdp):
  return parallel.make_mesh(ConfigDict(dict(data=data, fsdp=fsdp)))


def train(config, mesh, steps, batch_size=16):
  """-> final state, per-step metrics, first-step gradients."""
  _, state, history = run_steps(config, mesh, steps, batch_size)
  return state, [m for m, _ in history], history[0][1]


def assert_close(a_tree, b_tree, rtol, atol_scale):
  """Leaf by leaf; a leaf that is zero in exact arithmetic (the attention key bias) holds
  float noise, judged against the largest value of the whole tree."""
  overall = max((float(np.abs(np.asarray(b)).max()) for b in jax.tree.leaves(b_tree)),
                default=0.0)
  for a, b in zip(jax.tree.leaves(a_tree), jax.tree.leaves(b_tree)):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(
        a, b, rtol=rtol, atol=atol_scale * max(np.abs(b).max(), 1e-3) + 0.1 * atol_scale * overall)


def test_fsdp_shards_by_the_rules_and_equals_data_parallel(monkeypatch):
  monkeypatch.setattr(parallel, "MIN_FSDP_SIZE", 1024)  # pico leaves are small
  config = small_config({"clip": {"weight": 1.0}, "nclip": {**NCLIP_SMALL, "weight": 0.5}})
  fsdp_state, fsdp_hist, _ = train(config, mesh(1, 8), 10)
  sharded = 0
  for path, leaf in jax.tree_util.tree_leaves_with_path(fsdp_state):
    name = ".".join(parallel._key_str(k) for k in path)
    want = parallel.leaf_spec(name, leaf.shape, 8)
    assert leaf.sharding.spec == want, name
    if "fsdp" in want:
      sharded += 1
      dim = list(want).index("fsdp")
      assert leaf.addressable_shards[0].data.shape[dim] == leaf.shape[dim] // 8, name
  # Large kernels (towers, heads) and their Adam moments are split; norms and biases are not.
  assert sharded >= 10
  assert fsdp_state["params"]["towers"]["image"]["encoder"]["blocks"][0]["mlp"]["fc1"][
      "kernel"].sharding.spec == P(None, "fsdp")  # [32, 64]: the larger dimension
  assert fsdp_state["params"]["towers"]["logit_scale"].sharding.spec == P()

  dp_state, dp_hist, _ = train(config, mesh(8, 1), 10)
  for a, b in zip(fsdp_hist, dp_hist):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
  for part in ("params", "rest"):
    for a, b in zip(jax.tree.leaves(fsdp_state[part]), jax.tree.leaves(dp_state[part])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("objectives", [
    {"clip": {"weight": 1.0}, "nclip": {**NCLIP_SMALL, "weight": 0.5, "head_norm": "batch"}},
    pytest.param({"siglip": {"weight": 1.0}}, marks=pytest.mark.slow),
    pytest.param({"cliplite": {"weight": 1.0, "critic_dim": 32}}, marks=pytest.mark.slow),
], ids=["xclip", "siglip", "cliplite"])
def test_gradient_accumulation_equals_one_batch(objectives):
  """4 micro-batches of 16 (2 rows per device each) give the update of one batch of 64."""
  config = small_config(objectives)
  config.batch_size = 64
  one_state, one_hist, one_grads = train(config, mesh(8, 1), 2, batch_size=64)
  config.microbatches = 4
  acc_state, acc_hist, acc_grads = train(config, mesh(8, 1), 2, batch_size=64)
  for a, b in zip(acc_hist, one_hist):
    assert set(a) == set(b)
    for key in b:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
  assert_close(acc_grads, one_grads, rtol=1e-5, atol_scale=1e-5)
  for part in ("params", "rest"):
    assert_close(acc_state[part], one_state[part], rtol=1e-5, atol_scale=1e-5)


@pytest.mark.parametrize("policy", ["full", pytest.param("dots", marks=pytest.mark.slow)])
def test_remat_keeps_results(policy):
  batch = pipeline.to_global(synthetic_batch(0), parallel.batch_sharding(mesh(8, 1)))
  results, barriers = {}, {}
  for remat in ("none", policy):
    config = small_config()
    config.model.remat = remat
    trainer = Trainer(config, mesh(8, 1), VOCAB)
    state = trainer.init_state(0)
    step = jax.jit(trainer._loss_and_grads)
    metrics, _, grads = step(state, batch)
    results[remat] = jax.device_get((metrics, grads))
    barriers[remat] = step.lower(state, batch).as_text().count("optimization_barrier")
  # Rematerialised blocks are fenced by optimization barriers (kept from CSE), on top of the
  # LayerNorm backward pass's own.
  assert barriers[policy] > barriers["none"], barriers
  assert_close(results[policy], results["none"], rtol=1e-6, atol_scale=1e-6)


def test_bfloat16_compute_keeps_float32_parameters():
  results = {}
  for dtype in ("float32", "bfloat16"):
    config = small_config()
    config.model.dtype = dtype
    trainer = Trainer(config, mesh(8, 1), VOCAB)
    state = trainer.init_state(0)
    batch = pipeline.to_global(synthetic_batch(0), trainer.batch_sharding)
    program = str(jax.make_jaxpr(trainer._loss_and_grads)(state, batch))
    assert ("bf16" in program) == (dtype == "bfloat16")
    _, state, history = run_steps(config, trainer.mesh, 1)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state["params"]))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state["opt_state"])
               if jnp.issubdtype(leaf.dtype, jnp.floating))
    results[dtype] = float(history[0][0]["loss"])
  assert np.isfinite(results["bfloat16"])
  np.testing.assert_allclose(results["bfloat16"], results["float32"], rtol=2e-2)
