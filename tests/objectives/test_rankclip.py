"""RankCLIP: ListMLE against brute-force Plackett-Luce, its invariances, and the whole term
against a float64 reference written from the math (gradients by central differences)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from lang_image import objectives, parallel
from lang_image.errors import ConfigError
from lang_image.objectives import rankclip


def pl_probability(scores, perm):
  """Plackett-Luce probability of drawing items in the order `perm`, one by one."""
  p, remaining = 1.0, list(perm)
  for item in perm:
    p *= math.exp(scores[item]) / sum(math.exp(scores[j]) for j in remaining)
    remaining.remove(item)
  return p


def reference_list_mle(a, r, decay=False):
  rows = []
  for a_row, r_row in zip(a, r):
    perm = sorted(range(len(r_row)), key=lambda j: -r_row[j])
    if not decay:
      rows.append(-math.log(pl_probability(a_row, perm)))
      continue
    total, remaining = 0.0, list(perm)
    for k, item in enumerate(perm, start=1):
      lse = math.log(sum(math.exp(a_row[j]) for j in remaining))
      total += (lse - a_row[item]) / math.log(k + 1)
      remaining.remove(item)
    rows.append(total)
  return float(np.mean(rows))


def reference_term(u, v, t, variant, step, total):
  s = math.exp(t)
  S, SII, STT = s * u @ v.T, s * u @ u.T, s * v @ v.T
  decay = variant == "paper"
  cross = reference_list_mle(S, S.T, decay) + reference_list_mle(S.T, S, decay)
  in_modal = reference_list_mle(SII, STT, decay) + reference_list_mle(STT, SII, decay)
  if variant == "paper":
    return (cross + in_modal) / 16
  w = min(max(3 * step / (total - 1), 0.0), 2.0)
  return w * (cross + in_modal) / 32 / len(u)


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_list_mle_is_plackett_luce_nll(n):
  rng = np.random.default_rng(n)
  a, r = rng.normal(size=(3, n)), rng.normal(size=(3, n))
  for row in a:  # The reference is a distribution over orders.
    assert sum(pl_probability(row, p) for p in itertools.permutations(range(n))) == \
        pytest.approx(1.0)
  with jax.enable_x64(True):
    for decay in (False, True):
      got = rankclip.list_mle(jnp.asarray(a), jnp.asarray(r), decay)
      np.testing.assert_allclose(got, reference_list_mle(a, r, decay), rtol=1e-10)


def test_list_mle_invariances():
  rng = np.random.default_rng(0)
  a, r = rng.normal(size=(4, 7)), rng.normal(size=(4, 7))
  with jax.enable_x64(True):
    base = rankclip.list_mle(jnp.asarray(a), jnp.asarray(r))
    shifted = a + rng.normal(size=(4, 1)) * 10
    np.testing.assert_allclose(rankclip.list_mle(jnp.asarray(shifted), jnp.asarray(r)), base)
    np.testing.assert_allclose(rankclip.list_mle(jnp.asarray(a), jnp.exp(3 * jnp.asarray(r))),
                               base)
    ordered = 100.0 * np.argsort(np.argsort(r, axis=1), axis=1)  # same order, big margins
    assert float(rankclip.list_mle(jnp.asarray(ordered), jnp.asarray(r))) < 1e-30


@pytest.mark.parametrize("variant, step", [("code", 0), ("code", 3), ("code", 9), ("paper", 4)])
def test_term_and_gradients_match_float64_reference(variant, step):
  rng = np.random.default_rng(step)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  u, v, t = unit(rng.normal(size=(6, 4))), unit(rng.normal(size=(6, 4))), 1.3
  total = 10
  with jax.enable_x64(True):
    # The exact form, which the reference computes (test_rankclip_forms.py: both forms).
    fn = lambda a, b, c: rankclip.ranking_loss(a, b, c, variant, step, total,
                                               list_mle="exact")[0]
    loss, grads = jax.value_and_grad(fn, argnums=(0, 1, 2))(
        jnp.asarray(u), jnp.asarray(v), jnp.asarray(t))
  np.testing.assert_allclose(loss, reference_term(u, v, t, variant, step, total), rtol=1e-6)
  eps = 1e-6
  for index, (arg, grad) in enumerate(zip((u, v, t), grads)):
    flat = np.atleast_1d(np.asarray(arg, float)).ravel()
    numeric = np.zeros_like(flat)
    for j in range(flat.size):
      for sign in (1, -1):
        moved = [np.array(x, float) for x in (u, v, t)]
        view = np.atleast_1d(moved[index]).ravel()
        view[j] += sign * eps
        moved[index] = view.reshape(np.shape(arg)) if np.ndim(arg) else float(view[0])
        numeric[j] += sign * reference_term(*moved, variant, step, total) / (2 * eps)
    np.testing.assert_allclose(np.ravel(grad), numeric, rtol=1e-6, atol=1e-9)


def test_ramp_weight_follows_progress():
  assert [float(rankclip.ramp_weight(s, 11)) for s in (0, 2, 5, 10)] == \
      pytest.approx([0.0, 0.6, 1.5, 2.0])


@pytest.mark.parametrize("mesh_shape", [(8, 1), (2, 4)])
def test_sharded_equals_single_device(mesh_shape):
  rng = np.random.default_rng(5)
  unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
  u, v = unit(rng.normal(size=(32, 16))), unit(rng.normal(size=(32, 16)))
  v[7] = v[3]  # a repeated caption: ties, broken by the same shuffles on every device
  fn = jax.jit(jax.value_and_grad(
      lambda a, b, c: rankclip.ranking_loss(a, b, c, "code", 5, 10, rng=jax.random.key(2))[0],
      argnums=(0, 1, 2)))
  single = fn(u, v, np.float32(2.0))
  mesh = parallel.make_mesh(ConfigDict(dict(data=mesh_shape[0], fsdp=mesh_shape[1])))
  sharding = parallel.batch_sharding(mesh)
  sharded = fn(jax.device_put(u, sharding), jax.device_put(v, sharding), np.float32(2.0))
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unknown_variant_fails_before_compiling():
  with pytest.raises(ConfigError, match="unknown RankCLIP variant 'papers'.*'code', 'paper'"):
    objectives.check_config({"clip": {"weight": 1.0},
                             "rankclip": {"weight": 1.0, "variant": "papers"}})


def test_row_blocks_give_the_same_loss_and_gradients():
  """Processing the rows in recomputed blocks (large batches) changes nothing."""
  rng = np.random.default_rng(3)
  u, t = (rng.normal(size=(12, 5)) for _ in range(2))
  u, t = (jnp.asarray(x / np.linalg.norm(x, axis=1, keepdims=True), jnp.float32) for x in (u, t))

  def run(max_block_elements):
    def f(a, b, c):
      return rankclip.ranking_loss(a, b, c, "paper", max_block_elements=max_block_elements)[0]
    return jax.value_and_grad(f, argnums=(0, 1, 2))(u, t, jnp.float32(2.0))

  assert rankclip.row_block(12, 12, 40) == 3 and rankclip.row_block(12, 12, 1) == 1
  whole, blocked = run(10 ** 6), run(40)
  for a, b in zip(jax.tree.leaves(blocked), jax.tree.leaves(whole)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
