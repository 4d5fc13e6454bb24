"""Image tower: shapes, pooling, parameter count, patch embedding, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lang_image.models import VisionTransformer, parse_vit

SPEC = parse_vit("mu/8")
SIZE = 32


def make(pool="cls", dtype=jnp.float32, spec=SPEC, size=SIZE, **kw):
  return VisionTransformer(spec, size, pool=pool, dtype=dtype, rngs=nnx.Rngs(0), **kw)


def images(n=2, size=SIZE, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, size, size, 3))


def run(model, x, method="__call__"):
  """Applies `model.method` under jit: one compile is far cheaper than eager op dispatch."""
  graphdef, state = nnx.split(model)
  return jax.jit(lambda s, x: getattr(nnx.merge(graphdef, s), method)(x))(state, x)


def num_params(module):
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("pool", ["cls", "gap", "map"])
def test_output_shape_and_finite(pool):
  out = run(make(pool), images(3))
  assert out.shape == (3, SPEC.width)
  assert out.dtype == jnp.float32
  assert np.isfinite(np.asarray(out)).all()


def test_cls_and_gap_pool_the_token_features():
  x = images()
  cls_model, gap_model = make("cls"), make("gap")
  tokens = run(cls_model, x, "token_features")
  assert tokens.shape == (2, (SIZE // SPEC.patch) ** 2 + 1, SPEC.width)
  np.testing.assert_allclose(run(cls_model, x), tokens[:, 0], rtol=1e-5, atol=1e-6)
  tokens = run(gap_model, x, "token_features")
  assert tokens.shape == (2, (SIZE // SPEC.patch) ** 2, SPEC.width)
  np.testing.assert_allclose(run(gap_model, x), tokens.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_vit_b16_parameter_count():
  spec = parse_vit("B/16")
  model = nnx.eval_shape(lambda: make("cls", spec=spec, size=224))
  w, m, n = spec.width, spec.mlp_dim, (224 // 16) ** 2 + 1
  block = (w * 3 * w + 3 * w) + (w * w + w) + (w * m + m) + (m * w + w) + 4 * w
  expected = (16 * 16 * 3 * w + w) + n * w + w + spec.depth * block + 2 * w
  assert num_params(model) == expected
  assert 85.5e6 < expected < 86.5e6  # ViT-B/16 without a classifier is ~86M.


def test_patch_embedding_is_a_strided_conv():
  # Conv checkpoints load by reshaping; check that equivalence numerically.
  model = make()
  x = images()
  p, w = SPEC.patch, SPEC.width
  kernel = model.patch_embed.kernel[...].reshape(p, p, 3, w)
  conv = jax.lax.conv_general_dilated(x, kernel, (p, p), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  conv = conv.reshape(2, -1, w) + model.patch_embed.bias[...]
  np.testing.assert_allclose(model.patch_embed(model.patchify(x)), conv, rtol=1e-5, atol=1e-5)


def test_param_paths_are_stable():
  paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(make("map"), nnx.Param))}
  for name in ["patch_embed.kernel", "pos_embed", "encoder.blocks.0.attn.qkv.kernel",
               "encoder.blocks.3.mlp.fc1.kernel", "encoder.blocks.0.ln1.scale",
               "encoder.ln_final.scale", "map_head.probe", "map_head.kv.kernel"]:
    assert name in paths, name
  assert "cls_token" not in paths
  assert "cls_token" in {p[0] for p, _ in nnx.to_flat_state(nnx.state(make("cls"), nnx.Param))}


def test_image_size_must_be_divisible_by_patch():
  with pytest.raises(ValueError, match="not divisible by patch size 8"):
    make(size=36)


def test_wrong_input_resolution_is_rejected():
  with pytest.raises(ValueError, match="Expected 32x32"):
    make()(images(size=40))


def test_unknown_pool_is_rejected():
  with pytest.raises(ValueError, match="cls, gap, map"):
    make("max")


def test_bfloat16_is_finite_and_close_to_float32():
  x = images()
  out = run(make("map", dtype=jnp.bfloat16), x)
  assert out.dtype == jnp.bfloat16
  assert np.isfinite(np.asarray(out, np.float32)).all()
  ref = run(make("map"), x)
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=0.1)
  # Parameters stay float32 whatever the compute dtype.
  params = nnx.state(make("cls", dtype=jnp.bfloat16), nnx.Param)
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
