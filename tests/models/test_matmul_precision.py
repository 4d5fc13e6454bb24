"""config.model.matmul_precision = "bf16_f32acc": bf16 matmul inputs with float32 accumulation
and results in the forward and backward pass; parameters, gradients and AdamW state stay
float32."""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from benchmarks import hlo
from lang_image.models import build_two_tower, layers, matmul_precision, variants

VOCAB = 100
N = 4  # batch
DEPTH = 1


@pytest.fixture(scope="module", autouse=True)
def pico_towers():
  """One-block, 32-wide towers: every matmul kind of the step, compiled in a second."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(variants.VIT_SIZES, "pico", (32, DEPTH, 2, 64))
    patch.setitem(variants.TEXT_SIZES, "pico", (32, DEPTH, 2, 64))
    yield


def config(**overrides):
  cfg = ml_collections.ConfigDict(dict(
      image="pico/8", text="pico", image_size=16, max_len=12, embed_dim=16, image_pool="cls",
      image_stem="patch", text_pool="eot", dtype="float32",
      logit_scale_init=math.log(1 / 0.07)))
  cfg.update(overrides)
  return cfg


def inputs():
  images = jax.random.normal(jax.random.key(0), (N, 16, 16, 3))
  tokens = jax.random.randint(jax.random.key(1), (N, 12), 1, VOCAB)
  return images, tokens.at[:, -3:].set(0)


def loss_and_grads_fn(model):
  """A jitted (params, images, tokens) -> (CLIP loss, gradients) for `model`."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, images, tokens):
    out = nnx.merge(graphdef, params, rest)(images, tokens)
    logits = jnp.exp(out["logit_scale"]) * out["image_emb"] @ out["text_emb"].T
    labels = jnp.arange(logits.shape[0])
    ce = lambda l: -jnp.mean(jax.nn.log_softmax(l)[labels, labels])
    return (ce(logits) + ce(logits.T)) / 2

  return jax.jit(jax.value_and_grad(loss)), params


@functools.lru_cache(maxsize=None)
def run(matmul_precision, **overrides):
  """-> params, loss, gradients, and the compiled program's text."""
  model = build_two_tower(config(matmul_precision=matmul_precision, **overrides), VOCAB,
                          rngs=nnx.Rngs(0))
  fn, params = loss_and_grads_fn(model)
  compiled = fn.lower(params, *inputs()).compile()
  loss, grads = compiled(params, *inputs())
  return params, loss, grads, compiled.as_text()


@pytest.mark.parametrize("overrides", [
    {},
    # Padding masked as keys (non-causal text) and attention pooling (the MAP head).
    {"text_causal": False, "image_pool": "map"},
])
def test_loss_and_gradients_close_to_float32(overrides):
  params32, loss32, grads32, _ = run("default", **overrides)
  params16, loss16, grads16, _ = run("bf16_f32acc", **overrides)
  # Same parameters (the switch changes no initialisation), all float32.
  for a, b in zip(jax.tree.leaves(params32), jax.tree.leaves(params16)):
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  # bf16 inputs keep 8 significant bits (relative rounding 2^-9): the loss within 1%, every
  # gradient array within 5% in relative L2 norm, all of them together within 3%; the logit
  # scale's gradient (one scalar, a sum over all logits) within 30%.
  np.testing.assert_allclose(loss16, loss32, rtol=1e-2)
  assert loss16 != loss32  # the mode is in effect
  flat32 = jax.tree_util.tree_leaves_with_path(grads32)
  flat16 = jax.tree.leaves(grads16)
  for (path, g32), g16 in zip(flat32, flat16):
    assert g16.dtype == jnp.float32, path
    if g32.ndim == 0:
      np.testing.assert_allclose(g16, g32, rtol=0.3)
      continue
    err = float(jnp.linalg.norm(g16 - g32) / jnp.maximum(jnp.linalg.norm(g32), 1e-12))
    assert err < 0.05, (jax.tree_util.keystr(path), err)
  total = lambda t: jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(t)))
  diff = jax.tree.map(jnp.subtract, grads16, grads32)
  assert float(total(diff) / total(grads32)) < 0.03
  # AdamW (the trainer's optimizer) on these gradients: its state and the updated
  # parameters stay float32.
  tx = optax.adamw(1e-3, weight_decay=0.1)

  @jax.jit
  def step(params, grads):
    updates, opt_state = tx.update(grads, tx.init(params), params)
    return opt_state, optax.apply_updates(params, updates)

  opt_state, new_params = step(params16, grads16)
  for leaf in jax.tree.leaves((opt_state, new_params)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32


def compiled_dots(matmul_precision):
  """(lhs dtype, rhs dtype, result dtype, shapes) of every dot in the compiled loss and
  gradient program."""
  return [(d.lhs, d.rhs, d.result, (d.lhs_shape, d.rhs_shape, d.result_shape))
          for d in hlo.dots(run(matmul_precision)[3])]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's program")
def test_compiled_matmuls_take_bf16_and_return_f32():
  dots = compiled_dots("bf16_f32acc")
  low = [d for d in dots if d[:2] == ("bf16", "bf16")]
  # Every bf16 dot returns float32; none returns bf16.
  assert low and all(d[2] == "f32" for d in low), low
  # Each tower block has 4 projections and 2 attention products, plus the patch embedding
  # and the two output projections: each once forward and twice backward, except the
  # patch embedding's input gradient (images are not differentiated).
  blocks = 2 * DEPTH
  assert len(low) == 3 * (6 * blocks + 3) - 1, len(low)
  # What stays float32 is the loss's N x N logits (forward and its two gradients).
  loss_shape = f"{N},{N}"
  for d in dots:
    if d[:2] != ("bf16", "bf16"):
      assert loss_shape in d[3], d
  # The default mode compiles no bf16 dot at all.
  assert all(d[:2] == ("f32", "f32") for d in compiled_dots("default"))


def test_materialised_transpose_and_its_gradient():
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 5))
  perm = (0, 2, 1, 3)
  y = jax.jit(lambda a: matmul_precision.relayout(a, perm))(x)
  np.testing.assert_array_equal(y, jnp.transpose(x, perm))
  w = jax.random.normal(jax.random.key(1), y.shape)
  g = jax.jit(jax.grad(lambda a: jnp.sum(matmul_precision.relayout(a, perm) * w)))(x)
  np.testing.assert_array_equal(g, jnp.transpose(w, (0, 2, 1, 3)))


@pytest.mark.parametrize("k,n", [(16, 8), (4, 16)])
def test_bf16_matmul_gradients_match_rounded_float32(k, n):
  a = jax.random.normal(jax.random.key(0), (3, 8, k))
  b = jax.random.normal(jax.random.key(1), (3, k, n))
  r = lambda x: x.astype(jnp.bfloat16).astype(jnp.float32)
  for rhs_t, bb in ((False, b), (True, jnp.swapaxes(b, 1, 2))):
    fn = lambda a, b: jnp.sum(jnp.sin(matmul_precision.bf16_matmul(a, b, rhs_t)))
    ref = lambda a, b: jnp.sum(jnp.sin(
        jnp.einsum("bmk,bnk->bmn" if rhs_t else "bmk,bkn->bmn", r(a), r(b),
                   precision="highest")))
    (ga, gb), (ra, rb) = jax.grad(fn, (0, 1))(a, bb), jax.grad(ref, (0, 1))(a, bb)
    # The reference differs only in the rounding of the incoming gradient to bf16.
    np.testing.assert_allclose(ga, ra, rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(gb, rb, rtol=2e-2, atol=2e-2)


def test_unknown_matmul_precision_is_refused():
  with pytest.raises(ValueError, match="matmul precision"):
    build_two_tower(config(matmul_precision="fp8"), VOCAB, rngs=nnx.Rngs(0))
  assert matmul_precision.MATMUL_PRECISIONS == ("default", "bf16_f32acc")
