"""The ViT's convolutional stem: same token grid as patches, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lang_image.models import variants
from lang_image.models.conv_stem import ConvStem
from lang_image.models.vit import VisionTransformer


@pytest.mark.parametrize("patch", [8, 16])
def test_token_grid_matches_patches(patch):
  stem = ConvStem(patch, 64, rngs=nnx.Rngs(0))
  out = stem(jnp.ones((2, 64, 64, 3)))
  assert out.shape == (2, (64 // patch) ** 2, 64)
  assert len(stem.convs) == int(np.log2(patch))


def test_vit_with_conv_stem_is_translation_aware():
  vit = VisionTransformer(variants.parse_vit("mu/8"), 32, pool="gap", stem="conv",
                          rngs=nnx.Rngs(0))
  images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  out = vit(images)
  assert out.shape == (2, 128) and bool(jnp.all(jnp.isfinite(out)))
  assert not np.allclose(out, vit(jnp.roll(images, 8, axis=1)))


def test_non_power_of_two_patch_is_refused():
  with pytest.raises(ValueError, match="power-of-two patch size, got 14"):
    ConvStem(14, 64, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="Unknown image stem"):
    VisionTransformer(variants.parse_vit("mu/8"), 32, stem="hybrid", rngs=nnx.Rngs(0))
