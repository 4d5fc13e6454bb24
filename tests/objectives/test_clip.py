"""CLIP loss against a float64 reference written from the math, and across meshes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from lang_image import parallel
from lang_image.objectives import clip
from ml_collections import ConfigDict


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_loss_and_grads(u, v, t):
  """Symmetric InfoNCE and its analytic gradients in float64 numpy."""
  s = math.exp(t)
  S = s * u @ v.T
  B = len(S)
  row = S - S.max(axis=1, keepdims=True)
  col = S - S.max(axis=0, keepdims=True)
  lse_row = np.log(np.exp(row).sum(axis=1)) + S.max(axis=1)
  lse_col = np.log(np.exp(col).sum(axis=0)) + S.max(axis=0)
  loss = 0.5 * (np.mean(lse_row - np.diag(S)) + np.mean(lse_col - np.diag(S)))
  p_row = np.exp(S - lse_row[:, None])
  p_col = np.exp(S - lse_col[None, :])
  dS = (p_row - np.eye(B) + p_col - np.eye(B)) / (2 * B)
  return loss, s * dS @ v, s * dS.T @ u, float(np.sum(dS * S))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_float64_reference(seed):
  rng = np.random.default_rng(seed)
  B, D = 12, 7
  u, v = unit(rng.normal(size=(B, D))), unit(rng.normal(size=(B, D)))
  t = float(rng.uniform(0.0, math.log(100)))
  with jax.enable_x64(True):
    loss, grads = jax.value_and_grad(
        lambda a, b, c: clip.clip_loss(a, b, c)[0], argnums=(0, 1, 2))(
            jnp.asarray(u), jnp.asarray(v), jnp.asarray(t))
  ref_loss, du, dv, dt = reference_loss_and_grads(u, v, t)
  assert loss.dtype == jnp.float64
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  np.testing.assert_allclose(grads[0], du, rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(grads[1], dv, rtol=1e-6, atol=1e-12)
  np.testing.assert_allclose(grads[2], dt, rtol=1e-6)


def test_sanity_value_at_init():
  # OBJECTIVES.md: random unit embeddings, B = 16, s = 1/0.07 give about 5.1; that is the
  # value for 32-dimensional embeddings (the loss falls towards ln 16 as D grows).
  rng = np.random.default_rng(0)
  losses = [float(clip.clip_loss(unit(rng.normal(size=(16, 32))),
                                 unit(rng.normal(size=(16, 32))), math.log(1 / 0.07))[0])
            for _ in range(100)]
  assert 4.8 < np.mean(losses) < 5.4, np.mean(losses)


def test_perfect_alignment_gives_low_loss():
  u = np.eye(8, 16)
  loss, _ = clip.clip_loss(u, u, math.log(100.0))
  assert float(loss) < 1e-3


@pytest.mark.parametrize("mesh_shape", [(8, 1), (2, 4)])
def test_sharded_equals_single_device(mesh_shape):
  rng = np.random.default_rng(3)
  u = unit(rng.normal(size=(32, 16))).astype(np.float32)
  v = unit(rng.normal(size=(32, 16))).astype(np.float32)
  t = np.float32(math.log(1 / 0.07))

  def loss_and_grads(a, b, c):
    return jax.value_and_grad(lambda *x: clip.clip_loss(*x)[0], argnums=(0, 1, 2))(a, b, c)

  single = jax.jit(loss_and_grads)(u, v, t)
  mesh = parallel.make_mesh(ConfigDict(dict(data=mesh_shape[0], fsdp=mesh_shape[1])))
  sharding = parallel.batch_sharding(mesh)
  su, sv = jax.device_put(u, sharding), jax.device_put(v, sharding)
  sharded = jax.jit(loss_and_grads)(su, sv, jax.device_put(t, NamedSharding(mesh, P())))
  assert len(su.sharding.device_set) == 8
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
