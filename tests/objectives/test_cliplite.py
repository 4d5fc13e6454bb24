"""CLIP-Lite against a float64 reference written from OBJECTIVES.md and torch's module
semantics (LayerNorm and BatchNorm eps 1e-5; BatchNorm running statistics with momentum 0.1
and the unbiased variance, two updates per step); sanity value; initialisation; state."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from finite_differences import numeric_grad
from lang_image.errors import ConfigError
from lang_image.objectives import Context, check_config, cliplite


def softplus(x):
  return np.logaddexp(0.0, x)


TORCH_EPS = 1e-5         # nn.LayerNorm and nn.BatchNorm1d defaults


def layer_norm(x, scale, bias, eps=TORCH_EPS):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def p(v):
  return np.asarray(v[...], np.float64)


def block_reference(block, x, running=None, layer_norm_eps=TORCH_EPS):
  """LayerNorm(Linear2(ReLU(BatchNorm(Linear1 x))) + Shortcut x), with the batch's statistics
  (biased variance, as in training) or the given running (mean, var) as in evaluation."""
  h = x @ p(block.linear1.kernel)
  mean, var = (h.mean(0), h.var(0)) if running is None else running
  h = (h - mean) / np.sqrt(var + TORCH_EPS) * p(block.batch_norm.scale) + p(block.batch_norm.bias)
  h = np.maximum(h, 0.0) @ p(block.linear2.kernel) + p(block.linear2.bias)
  h = h + x @ p(block.shortcut.kernel) + p(block.shortcut.bias)
  return layer_norm(h, p(block.norm.scale), p(block.norm.bias), layer_norm_eps)


def randomise_norms(critic, rng):
  """Non-identity LayerNorm and BatchNorm scales and biases."""
  for block in (critic.image, critic.text):
    for module in (block.batch_norm, block.norm):
      module.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, module.scale.shape), jnp.float32)
      module.bias[...] = jnp.asarray(rng.normal(0, 0.3, module.bias.shape), jnp.float32)


def reference_loss(critic, f, g, tau, negative):
  a, b = block_reference(critic.image, f), block_reference(critic.text, g)
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  t_pos = math.exp(tau) * np.sum(a * b, 1)
  t_neg = math.exp(tau) * np.sum(a * b[negative], 1)
  return np.mean(softplus(-t_pos)) + np.mean(softplus(t_neg))


def make_critic(**overrides):
  opts = {**cliplite.DEFAULTS, "critic_dim": 6, **overrides}
  critic = cliplite.make_head(opts, {"image_width": 5, "text_width": 4}, nnx.Rngs(0))
  return critic, opts


def loss_fn(critic, negatives, key):
  """Loss as a function of features and tau; the critic's statistics are not kept."""
  def f(fi, ft, tau):
    model = nnx.clone(critic)
    return cliplite.jsd_loss(model.image(fi, train=True), model.text(ft, train=True), tau,
                             negatives, key)[0]
  return f


@pytest.mark.parametrize("negatives", ["roll", "shuffle"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_grads_match_float64_reference(negatives, seed):
  rng = np.random.default_rng(seed)
  B = 7
  critic, _ = make_critic()
  randomise_norms(critic, rng)
  f, g, tau = rng.normal(size=(B, 5)), rng.normal(size=(B, 4)), float(rng.uniform(0, 3))
  negative = np.asarray(cliplite.negative_index(B, negatives, jax.random.key(seed)))
  with jax.enable_x64(True):
    value, grads = jax.value_and_grad(loss_fn(critic, negatives, jax.random.key(seed)),
                                      argnums=(0, 1, 2))(
        jnp.asarray(f), jnp.asarray(g), jnp.asarray(tau))
  assert value.dtype == jnp.float64
  np.testing.assert_allclose(value, reference_loss(critic, f, g, tau, negative), rtol=1e-6)
  want = (numeric_grad(lambda x: reference_loss(critic, x, g, tau, negative), f),
          numeric_grad(lambda x: reference_loss(critic, f, x, tau, negative), g),
          numeric_grad(lambda t: reference_loss(critic, f, g, float(t), negative),
                       np.asarray(tau)))
  for got, ref in zip(grads, want):
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())


def test_negatives_roll_and_shuffle():
  np.testing.assert_array_equal(cliplite.negative_index(5, "roll"), [1, 2, 3, 4, 0])
  seen = set()
  for seed in range(20):
    idx = np.asarray(cliplite.negative_index(9, "shuffle", jax.random.key(seed)))
    assert sorted(idx) == list(range(9))                     # a permutation of the texts
    assert np.all(idx != np.arange(9))                        # no image meets its own text
    node, cycle = 0, []                                       # one cycle through the batch
    while node not in cycle:
      cycle.append(node)
      node = idx[node]
    assert len(cycle) == 9
    seen.add(tuple(idx))
  assert len(seen) == 20                                      # fresh every step


def test_zero_critic_gives_two_ln_two():
  z = jnp.zeros((4, 3))
  value, _, _ = cliplite.jsd_loss(z, z, jnp.asarray(2.0))
  assert float(value) == pytest.approx(2 * math.log(2), rel=1e-7)
  u = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  value, _, _ = cliplite.jsd_loss(u, u, jnp.asarray(-60.0))
  assert float(value) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_prior_term_matches_reference_and_mixes_by_weight():
  critic, opts = make_critic(prior_weight=0.1)
  rng = np.random.default_rng(5)
  f, u = rng.normal(size=(6, 5)), rng.uniform(size=(6, 5))

  def d_logit(x):
    h = x
    for i, layer in enumerate(critic.prior.layers):
      h = h @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64)
      if i < 2:
        h = np.maximum(h, 0)
    return h[:, 0]

  def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)

  want = -(np.mean(log_sigmoid(d_logit(u))) + np.mean(np.log1p(-1 / (1 + np.exp(-d_logit(f))))))
  with jax.enable_x64(True):
    got = cliplite.prior_loss(critic.prior, jnp.asarray(f), jnp.asarray(u))
  np.testing.assert_allclose(got, want, rtol=1e-9)
  # The term is (1 - w) L + w PRIOR.
  out = {"image_features": jnp.asarray(f, jnp.float32),
         "text_features": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
  ctx = Context(step=jnp.zeros((), jnp.int32), total_steps=10, rng=jax.random.key(0))
  plain, _ = cliplite.loss(out, nnx.clone(critic), ctx, {**opts, "prior_weight": 0.0})
  mixed, metrics = cliplite.loss(out, nnx.clone(critic), ctx, opts)
  np.testing.assert_allclose(mixed, 0.9 * plain + 0.1 * metrics["prior"], rtol=1e-6)
  assert float(metrics["prior"]) > 0


@pytest.mark.parametrize("option,value,needle", [
    ("negatives", "hard", "negatives"),
    ("prior_weight", 1.5, "prior_weight"),
    ("critic_dim", 0, "critic_dim"),
])
def test_bad_options_fail_with_one_sentence(option, value, needle):
  with pytest.raises(ConfigError, match=needle):
    check_config({"cliplite": {"weight": 1.0, option: value}})
