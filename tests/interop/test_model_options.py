"""The model options imported towers use, each against its definition; defaults unchanged."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from lang_image.models import build_two_tower, variants
from lang_image.models.pretrainer import IMAGE_NORMS, preprocess_images
from lang_image.models.text import TextTransformer


def test_explicit_variant_strings_round_trip():
  spec = variants.parse_vit("w48-d2-h4-mlp96/8")
  assert (spec.width, spec.depth, spec.heads, spec.mlp_dim, spec.patch) == (48, 2, 4, 96, 8)
  assert variants.vit_name(variants.parse_vit("B/16")) == "w768-d12-h12-mlp3072/16"
  assert variants.parse_vit(variants.vit_name(spec)) == spec
  text = variants.parse_text("B")
  assert variants.parse_text(variants.text_name(text)) == text
  with pytest.raises(ValueError, match="width divisible by the heads"):
    variants.parse_text("w40-d2-h3-mlp80")


def test_end_of_text_pools():
  """"argmax": the first largest id; "eos": the first eos_id, else position 0 (as torch's
  argmax over a boolean row)."""
  tokens = jnp.asarray([[7, 3, 9, 0, 0], [7, 9, 2, 9, 5], [7, 3, 3, 3, 3]], jnp.int32)
  spec = variants.TextSpec(8, 1, 2, 16)

  def tower(**kw):  # Pooling positions need no parameters: build the shapes only.
    return nnx.eval_shape(lambda: TextTransformer(spec, 10, 5, rngs=nnx.Rngs(0), **kw))

  np.testing.assert_array_equal(tower(pool="argmax").eot_index(tokens), [2, 1, 0])
  np.testing.assert_array_equal(tower(pool="eos", eos_id=9).eot_index(tokens), [2, 1, 0])
  np.testing.assert_array_equal(tower(pool="eot").eot_index(tokens), [2, 4, 4])
  with pytest.raises(ValueError, match="needs the end-of-text id"):
    tower(pool="eos")


def test_layer_norm_epsilon_option_reaches_every_norm():
  config = ml_collections.ConfigDict(dict(
      image="w16-d1-h2-mlp32/4", text="w16-d1-h2-mlp32", image_size=8, max_len=4, embed_dim=8,
      image_pool="cls", text_pool="eot", image_pre_norm=True, dtype="float32",
      logit_scale_init=1.0))
  default = nnx.eval_shape(lambda: build_two_tower(config, 20, rngs=nnx.Rngs(0)))
  config.ln_eps = 1e-6
  other = nnx.eval_shape(lambda: build_two_tower(config, 20, rngs=nnx.Rngs(0)))
  for towers, eps in ((default, 1e-5), (other, 1e-6)):
    norms = [m for _, m in nnx.iter_modules(towers) if isinstance(m, nnx.LayerNorm)]
    assert len(norms) == 7 and {m.epsilon for m in norms} == {eps}


def test_image_normalisations():
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 4, 4, 3)), jnp.uint8)
  x = np.asarray(images, np.float64) / 255.0
  np.testing.assert_array_equal(preprocess_images(images, 4),
                                np.asarray(images, np.float32) * np.float32(2 / 255) - 1)
  for name, (mean, std) in IMAGE_NORMS.items():
    np.testing.assert_allclose(preprocess_images(images, 4, name), (x - mean) / std, atol=1e-5)
