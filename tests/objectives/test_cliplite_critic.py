"""CLIP-Lite's critic as the released code builds and runs it (github 4m4n5/CLIP-Lite):
torch's initialisation, LayerNorm/BatchNorm epsilons of 1e-5, and BatchNorm running
statistics that follow torch (momentum 0.1, unbiased variance, two updates per step),
against float64 numpy references written from those definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lang_image.objectives import Context, cliplite
from lang_image.objectives.cliplite_critic import CriticBlock

from test_cliplite import block_reference, make_critic, p, randomise_norms


def uniform_bound_check(values, bound):
  """Values drawn uniformly in +-bound: inside it, spread over it, with its variance."""
  values = np.asarray(values, np.float64).ravel()
  assert np.abs(values).max() <= bound
  assert np.abs(values).max() > 0.9 * bound
  assert values.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_initialisation_is_torchs():
  block = CriticBlock(96, 128, rngs=nnx.Rngs(0))
  uniform_bound_check(block.linear1.kernel[...], 1 / math.sqrt(96))
  uniform_bound_check(block.linear2.kernel[...], 1 / math.sqrt(128))
  uniform_bound_check(block.linear2.bias[...], 1 / math.sqrt(128))
  uniform_bound_check(block.shortcut.bias[...], 1 / math.sqrt(96))
  kernel = np.asarray(block.shortcut.kernel[...])                   # (96 in, 128 out)
  np.testing.assert_array_equal(np.diag(kernel), np.ones(96))       # exactly 1, no noise
  uniform_bound_check(kernel[~np.eye(96, 128, dtype=bool)], 0.01)
  for norm in (block.batch_norm, block.norm):
    np.testing.assert_array_equal(norm.scale[...], 1.0)
    np.testing.assert_array_equal(norm.bias[...], 0.0)
  np.testing.assert_array_equal(block.batch_norm.mean[...], 0.0)
  np.testing.assert_array_equal(block.batch_norm.var[...], 1.0)
  critic, _ = make_critic(prior_weight=0.1)
  first = critic.prior.layers[0]
  uniform_bound_check(first.kernel[...], 1 / math.sqrt(5))
  assert critic.text_prior.layers[0].kernel.shape == (4, 1000)
  np.testing.assert_allclose(critic.log_temperature[...], math.log(1 / 0.07), rtol=1e-7)


def test_layer_and_batch_norm_epsilons_are_torchs():
  """Inputs of small spread, where eps 1e-5 and flax's 1e-6 give visibly different blocks."""
  rng = np.random.default_rng(1)
  critic, _ = make_critic()
  randomise_norms(critic, rng)
  block = critic.image
  block.linear2.kernel[...] *= 1e-3
  block.linear2.bias[...] *= 1e-3
  block.shortcut.kernel[...] *= 1e-3
  block.shortcut.bias[...] *= 1e-3
  x = rng.normal(size=(8, 5)) * 1e-3
  with jax.enable_x64(True):
    got = np.asarray(block(jnp.asarray(x), train=True))
  np.testing.assert_allclose(got, block_reference(block, x), rtol=1e-6, atol=1e-9)
  flax_eps = block_reference(block, x, layer_norm_eps=1e-6)
  assert np.abs(got - flax_eps).max() > 1e-2


def numpy_running_statistics(block, batches, momentum=0.1, passes=2):
  """torch's BatchNorm1d running averages after one step per batch, `passes` forward passes
  per step, in float64: r <- (1 - m) r + m stat, with the unbiased batch variance."""
  mean, var = np.zeros(block.linear1.kernel.shape[1]), np.ones(block.linear1.kernel.shape[1])
  for x in batches:
    h = x @ p(block.linear1.kernel)
    for _ in range(passes):
      mean = (1 - momentum) * mean + momentum * h.mean(0)
      var = (1 - momentum) * var + momentum * h.var(0, ddof=1)
  return mean, var


def test_running_statistics_after_steps_follow_torch_and_drive_evaluation():
  rng = np.random.default_rng(2)
  critic, opts = make_critic()
  randomise_norms(critic, rng)
  steps = [(rng.normal(2.0, 1.5, size=(8, 5)), rng.normal(-1.0, 0.5, size=(8, 4)))
           for _ in range(4)]
  for step, (f, g) in enumerate(steps):
    out = {"image_features": jnp.asarray(f, jnp.float32),
           "text_features": jnp.asarray(g, jnp.float32)}
    ctx = Context(step=jnp.asarray(step), total_steps=10, rng=jax.random.key(step))
    cliplite.loss(out, critic, ctx, opts)
  for block, batches in ((critic.image, [s[0] for s in steps]),
                         (critic.text, [s[1] for s in steps])):
    mean, var = numpy_running_statistics(block, [np.float32(b).astype(np.float64)
                                                 for b in batches])
    np.testing.assert_allclose(block.batch_norm.mean[...], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(block.batch_norm.var[...], var, rtol=1e-5)
    # One update per step, or the biased variance, would be far off after four steps.
    one_pass = numpy_running_statistics(block, batches, passes=1)
    assert np.abs(p(block.batch_norm.mean) - one_pass[0]).max() > 1e-2
  # Evaluation: the running statistics, not the batch's: one example embeds alone as in a batch.
  x = rng.normal(size=(5, 5))
  want = block_reference(critic.image, x, running=(p(critic.image.batch_norm.mean),
                                                   p(critic.image.batch_norm.var)))
  want /= np.linalg.norm(want, axis=1, keepdims=True)
  got = cliplite.embed(critic, "image", jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(cliplite.embed(critic, "image", jnp.asarray(x[:1], jnp.float32))[0],
                             got[0], rtol=1e-6, atol=1e-7)


def test_text_prior_adds_a_second_discriminator_on_the_text_features():
  rng = np.random.default_rng(3)
  out = {"image_features": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
         "text_features": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)}
  ctx = Context(step=jnp.zeros((), jnp.int32), total_steps=10, rng=jax.random.key(0))
  both, options = make_critic(prior_weight=0.1)
  image_only, image_options = make_critic(prior_weight=0.1, text_prior=False)
  assert image_only.text_prior is None
  _, with_text = cliplite.loss(out, nnx.clone(both), ctx, options)
  _, without = cliplite.loss(out, nnx.clone(image_only), ctx, image_options)
  # Same seed, same image discriminator and samples: the difference is the text part, a
  # discriminator's cross-entropy, which is positive.
  assert float(with_text["prior"]) > float(without["prior"]) > 0

  def text_prior_loss(text_prior):
    model = nnx.clone(both)
    model.text_prior = text_prior
    return cliplite.loss(out, model, ctx, options)[0]

  grads = nnx.grad(text_prior_loss)(both.text_prior)
  assert float(jnp.abs(grads.layers[0].kernel[...]).max()) > 0
