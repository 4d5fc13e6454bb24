"""The encoder's elementwise pieces against float64 references: the exact GELU and the
LayerNorm with its hand-written backward pass."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lang_image.models import layers, norms
from finite_differences import numeric_grad


def gelu64(x):
  return np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x.ravel()]).reshape(x.shape)


def test_exact_gelu_and_its_derivative_match_float64():
  x = np.linspace(-12.0, 12.0, 4001)
  y, dy = jax.vmap(jax.value_and_grad(layers.exact_gelu))(jnp.asarray(x, jnp.float32))
  ref = gelu64(x)
  dref = np.array([0.5 * math.erfc(-v / math.sqrt(2)) + v * math.exp(-v * v / 2)
                   / math.sqrt(2 * math.pi) for v in x])
  # About one float32 ulp of the output (|gelu(x)| <= 12 here), and the derivative as
  # close; the negative tail, where erf cancels against 1, is bounded in absolute terms.
  np.testing.assert_allclose(np.asarray(y, np.float64), ref, rtol=4e-7, atol=2e-6)
  np.testing.assert_allclose(np.asarray(dy, np.float64), dref, rtol=4e-7, atol=2e-6)
  assert layers.ACTIVATIONS["gelu"] is layers.exact_gelu


def layer_norm64(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


@pytest.mark.parametrize("shape", [(3, 8), (2, 3, 16)])
def test_layer_norm_and_its_gradients_match_float64(shape):
  rng = np.random.default_rng(0)
  x = rng.normal(0.5, 2.0, shape)
  scale, bias = rng.normal(1.0, 0.3, shape[-1]), rng.normal(0.0, 0.3, shape[-1])
  w = rng.normal(size=shape)           # a fixed cotangent: the loss is sum(w * ln(x))
  eps = 1e-5
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  loss = lambda a, s, b: jnp.sum(f32(w) * norms.layer_norm_f32(a, s, b, eps))
  y = norms.layer_norm_f32(f32(x), f32(scale), f32(bias), eps)
  gx, gs, gb = jax.jit(jax.grad(loss, (0, 1, 2)))(f32(x), f32(scale), f32(bias))
  np.testing.assert_allclose(y, layer_norm64(x, scale, bias, eps), rtol=1e-5, atol=1e-5)
  ref = lambda **kw: np.sum(w * layer_norm64(**{**dict(x=x, scale=scale, bias=bias,
                                                       eps=eps), **kw}))
  np.testing.assert_allclose(gx, numeric_grad(lambda a: ref(x=a), x), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(gs, numeric_grad(lambda s: ref(scale=s), scale), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(gb, numeric_grad(lambda b: ref(bias=b), bias), rtol=1e-4,
                             atol=1e-4)


def test_apply_norm_uses_the_modules_parameters_and_epsilon():
  ln = norms.layer_norm(16, nnx.Rngs(0))
  ln.scale[...] = jnp.linspace(0.5, 1.5, 16)
  ln.bias[...] = jnp.linspace(-1.0, 1.0, 16)
  norms.set_norm_epsilon(ln, 1e-2)
  x = jax.random.normal(jax.random.key(1), (4, 16)) * 1e-1
  got = norms.apply_norm(ln, x, jnp.float32)
  want = layer_norm64(np.asarray(x, np.float64), np.asarray(ln.scale[...], np.float64),
                      np.asarray(ln.bias[...], np.float64), 1e-2)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert norms.apply_norm(ln, x, jnp.bfloat16).dtype == jnp.bfloat16
