"""SigLIP loss against a float64 reference written from the math; sanity value; meshes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from lang_image import parallel
from lang_image.errors import ConfigError
from lang_image.objectives import check_config, siglip


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_loss_and_grads(u, v, t, b):
  """-1/B sum_ij log sigmoid(z_ij (s u_i.v_j + b)) and its analytic gradients, float64."""
  s = math.exp(t)
  B = len(u)
  x = s * u @ v.T + b
  z = 2 * np.eye(B) - 1
  loss = np.sum(np.logaddexp(0.0, -z * x)) / B   # -log sigmoid(y) = log(1 + e^-y)
  g = -z / (1 + np.exp(z * x)) / B                # d loss / d x
  return loss, s * g @ v, s * g.T @ u, float(np.sum(g * (x - b))), float(np.sum(g))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_float64_reference(seed):
  rng = np.random.default_rng(seed)
  u, v = unit(rng.normal(size=(10, 6))), unit(rng.normal(size=(10, 6)))
  t, b = float(rng.uniform(0, 3)), float(rng.uniform(-12, 2))
  with jax.enable_x64(True):
    loss, grads = jax.value_and_grad(siglip.siglip_loss, argnums=(0, 1, 2, 3))(
        jnp.asarray(u), jnp.asarray(v), jnp.asarray(t), jnp.asarray(b))
  ref = reference_loss_and_grads(u, v, t, b)
  assert loss.dtype == jnp.float64
  np.testing.assert_allclose(loss, ref[0], rtol=1e-6)
  for got, want in zip(grads, ref[1:]):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_sanity_value_at_init():
  # Each positive costs about softplus(10) = 10 at b = -10, negatives almost nothing.
  rng = np.random.default_rng(0)
  head = siglip.make_head(siglip.DEFAULTS, {}, None)
  losses = [float(siglip.siglip_loss(unit(rng.normal(size=(16, 64))),
                                     unit(rng.normal(size=(16, 64))),
                                     head.log_scale[...], head.bias[...])) for _ in range(20)]
  assert 9.7 < np.mean(losses) < 10.1, np.mean(losses)


@pytest.mark.parametrize("mesh_shape", [(8, 1), (2, 4)])
def test_sharded_equals_single_device(mesh_shape):
  rng = np.random.default_rng(4)
  u = unit(rng.normal(size=(32, 16))).astype(np.float32)
  v = unit(rng.normal(size=(32, 16))).astype(np.float32)
  args = (np.float32(math.log(10.0)), np.float32(-3.0))
  fn = jax.jit(jax.value_and_grad(siglip.siglip_loss, argnums=(0, 1, 2, 3)))
  single = fn(u, v, *args)
  mesh = parallel.make_mesh(ConfigDict(dict(data=mesh_shape[0], fsdp=mesh_shape[1])))
  sharding = parallel.batch_sharding(mesh)
  sharded = fn(jax.device_put(u, sharding), jax.device_put(v, sharding), *args)
  for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_scale_is_free_unless_clamped_as_open_clip_clamps_it():
  free = siglip.make_head(siglip.DEFAULTS, None, None)
  clamped = siglip.make_head({**siglip.DEFAULTS, "clamp_scale": True}, None, None)
  for log_scale, want in ((5.3, math.log(100.0)), (-0.4, 0.0), (3.1, 3.1)):
    for head in (free, clamped):
      head.log_scale[...] = jnp.float32(log_scale)
      head.post_update(1, 10)
    assert float(free.log_scale[...]) == pytest.approx(log_scale)
    assert float(clamped.log_scale[...]) == pytest.approx(want)


def test_clamp_scale_must_be_a_bool():
  with pytest.raises(ConfigError, match="clamp_scale"):
    check_config({"siglip": {"weight": 1.0, "clamp_scale": "yes"}})
