"""Two-tower model: build from config, embeddings, logit scale, jit split/merge."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lang_image.models import TwoTower, build_two_tower

VOCAB = 100


def config(**overrides):
  cfg = ml_collections.ConfigDict(dict(
      image="mu/8", text="mu", image_size=32, max_len=16, embed_dim=64, image_pool="gap",
      text_pool="eot", dtype="float32", logit_scale_init=math.log(1 / 0.07)))
  cfg.update(overrides)
  return cfg


def batch(n=4, length=12):
  images = jax.random.normal(jax.random.key(0), (n, 32, 32, 3))
  tokens = jax.random.randint(jax.random.key(1), (n, length), 1, VOCAB)
  return images, tokens.at[:, -3:].set(0)


def apply(model, *args):
  graphdef, state = nnx.split(model)
  return jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, *args)


def test_outputs_shapes_and_unit_embeddings():
  model = build_two_tower(config(), VOCAB, rngs=nnx.Rngs(0))
  assert isinstance(model, TwoTower)
  out = apply(model, *batch())
  assert set(out) == {"image_features", "text_features", "image_emb", "text_emb", "logit_scale"}
  assert out["image_features"].shape == (4, 128) and out["text_features"].shape == (4, 128)
  for key in ("image_emb", "text_emb"):
    assert out[key].shape == (4, 64) and out[key].dtype == jnp.float32
    np.testing.assert_allclose(jnp.linalg.norm(out[key], axis=-1), 1.0, rtol=1e-5)
  assert out["logit_scale"].shape == ()
  np.testing.assert_allclose(out["logit_scale"], math.log(1 / 0.07), rtol=1e-6)


def test_encoders_agree_with_call():
  model = build_two_tower(config(image_pool="cls", text_pool="mean"), VOCAB, rngs=nnx.Rngs(0))
  images, tokens = batch()
  graphdef, state = nnx.split(model)

  @jax.jit
  def encode(state):
    m = nnx.merge(graphdef, state)
    return m.encode_image(images), m.encode_text(tokens), m(images, tokens)

  (img_f, img_e), (txt_f, txt_e), out = encode(state)
  np.testing.assert_allclose(img_e, out["image_emb"], rtol=1e-6)
  np.testing.assert_allclose(txt_f, out["text_features"], rtol=1e-6)


def test_clamp_logit_scale_under_jit_after_split_merge():
  model = build_two_tower(config(logit_scale_init=7.0), VOCAB, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def clamp(params, rest):
    m = nnx.merge(graphdef, params, rest)
    m.clamp_logit_scale(0.0, math.log(100.0))
    return nnx.state(m, nnx.Param)

  new_params = clamp(params, rest)
  np.testing.assert_allclose(new_params["logit_scale"][...], math.log(100.0), rtol=1e-6)
  assert float(params["logit_scale"][...]) == 7.0  # Inputs are not mutated.
  nnx.update(model, new_params)
  np.testing.assert_allclose(model.logit_scale[...], math.log(100.0), rtol=1e-6)
  model.clamp_logit_scale(5.0, 6.0)  # Also works eagerly, and raises to `lo`.
  assert float(model.logit_scale[...]) == 5.0


def test_gradients_reach_both_towers_and_the_scale():
  model = build_two_tower(config(), VOCAB, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  images, tokens = batch()

  def loss(params):
    out = nnx.merge(graphdef, params, rest)(images, tokens)
    logits = jnp.exp(out["logit_scale"]) * out["image_emb"] @ out["text_emb"].T
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))

  grads = jax.jit(jax.grad(loss))(params)
  flat = {".".join(map(str, p)): np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}
  assert all(np.isfinite(g).all() for g in flat.values())
  for name in ("logit_scale", "image.patch_embed.kernel", "text.token_embed.embedding",
               "image_proj.kernel", "text_proj.kernel", "text.encoder.blocks.0.attn.qkv.kernel"):
    assert np.abs(flat[name]).max() > 0, name


def test_bfloat16_and_logit_bias():
  model = build_two_tower(config(dtype="bfloat16", image_pool="map", logit_bias_init=-10.0),
                          VOCAB, rngs=nnx.Rngs(0))
  out = apply(model, *batch())
  for key in ("image_features", "text_features", "image_emb", "text_emb"):
    assert out[key].dtype == jnp.float32
    assert np.isfinite(np.asarray(out[key])).all()
  np.testing.assert_allclose(jnp.linalg.norm(out["text_emb"], axis=-1), 1.0, rtol=1e-5)
  assert float(out["logit_bias"]) == -10.0


def test_bad_config_values_are_rejected():
  with pytest.raises(ValueError, match="float32, bfloat16"):
    build_two_tower(config(dtype="float16"), VOCAB, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="known sizes"):
    build_two_tower(config(image="Q/16"), VOCAB, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="not divisible by patch"):
    build_two_tower(config(image_size=30), VOCAB, rngs=nnx.Rngs(0))
