"""Text tower: shapes, causality, padding invariance, pooling, parameter count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lang_image.models import TextTransformer, parse_text

SPEC = parse_text("mu")
VOCAB, MAX_LEN = 100, 16


def make(pool="eot", dtype=jnp.float32, **kw):
  return TextTransformer(SPEC, VOCAB, MAX_LEN, pool=pool, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def run(model, tokens, method="__call__"):
  """Applies `model.method` under jit: one compile is far cheaper than eager op dispatch."""
  graphdef, state = nnx.split(model)
  return jax.jit(lambda s, t: getattr(nnx.merge(graphdef, s), method)(t))(state, tokens)


def padded(rows, length):
  """Rows of ids (each ending in its EOS) right-padded with 0 to `length`."""
  out = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    out[i, :len(row)] = row
  return jnp.asarray(out)


ROWS = [[5, 17, 33, 2], [9, 2], [4, 8, 15, 16, 23, 42, 2]]


@pytest.mark.parametrize("pool", ["eot", "mean", "first"])
def test_output_shape_and_finite(pool):
  out = run(make(pool), padded(ROWS, 10))
  assert out.shape == (3, SPEC.width)
  assert np.isfinite(np.asarray(out)).all()


def test_attention_is_causal():
  model = make()
  tokens = padded(ROWS, 10)
  t = 3
  changed = tokens.at[:, t].set(77)
  before = run(model, tokens, "token_features")
  after = run(model, changed, "token_features")
  np.testing.assert_allclose(before[:, :t], after[:, :t], rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(before[:, t:] - after[:, t:])).max(axis=-1).min() > 1e-3


@pytest.mark.parametrize("pool", ["eot", "mean"])
def test_trailing_padding_does_not_change_output(pool):
  model = make(pool)
  short = run(model, padded(ROWS, 8))
  long = run(model, padded(ROWS, MAX_LEN))
  np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-5)


def test_eot_pools_the_last_real_token():
  model = make()
  tokens = padded(ROWS, 10)
  feats = run(model, tokens, "token_features")
  np.testing.assert_array_equal(model.eot_index(tokens), [3, 1, 6])
  np.testing.assert_allclose(run(model, tokens), feats[jnp.arange(3), jnp.array([3, 1, 6])],
                             rtol=1e-6)
  assert int(model.eot_index(jnp.zeros((1, 5), jnp.int32))[0]) == 0


def test_mean_ignores_pad_positions():
  model = make("mean")
  tokens = padded(ROWS, 10)
  feats = np.asarray(run(model, tokens, "token_features"))
  expected = [feats[i, :len(row)].mean(axis=0) for i, row in enumerate(ROWS)]
  np.testing.assert_allclose(run(model, tokens), np.stack(expected), rtol=1e-5, atol=1e-6)


def test_bidirectional_variant_masks_padding():
  model = make("first", causal=False)
  tokens = padded(ROWS, 8)
  # Without the causal mask the first token must see later real tokens...
  assert np.abs(np.asarray(run(model, tokens) - run(model, tokens.at[:, 1].set(77)))).min() > 1e-4
  # ...but still none of the padding.
  np.testing.assert_allclose(run(model, tokens), run(model, padded(ROWS, MAX_LEN)),
                             rtol=1e-5, atol=1e-5)


def test_too_long_input_and_unknown_pool_are_rejected():
  with pytest.raises(ValueError, match="exceeds max_len 16"):
    make().token_features(jnp.ones((1, MAX_LEN + 1), jnp.int32))
  with pytest.raises(ValueError, match="eot, mean, first"):
    make("last")


def test_text_b_parameter_count():
  spec = parse_text("B")
  model = nnx.eval_shape(lambda: TextTransformer(spec, 49408, 77, rngs=nnx.Rngs(0)))
  count = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  # OpenAI CLIP's B text encoder: ~63M (63.4M including its 512x512 projection).
  assert 62.5e6 < count < 63.5e6
  w, m = spec.width, spec.mlp_dim
  block = 4 * w * w + 4 * w + 2 * w * m + m + w + 4 * w
  assert count == 49408 * w + 77 * w + spec.depth * block + 2 * w


def test_bfloat16_is_finite():
  out = run(make(dtype=jnp.bfloat16), padded(ROWS, 10))
  assert out.dtype == jnp.bfloat16
  assert np.isfinite(np.asarray(out, np.float32)).all()
