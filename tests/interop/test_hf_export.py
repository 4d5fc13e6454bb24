"""lang_image towers written as a CLIPModel folder load in transformers and compute the same."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from transformers import CLIPModel, CLIPTokenizer

from conftest import hf_embeddings, lang_image_embeddings, random_inputs
from lang_image.interop import architecture, export, pretrained
from lang_image.interop.tensors import CheckpointError
from lang_image.models import build_two_tower


def load_hf(directory):
  model, info = CLIPModel.from_pretrained(directory, output_loading_info=True)
  assert not any(info.values()), info  # nothing missing, unexpected or mismatched
  return model.eval()


def test_export_loads_in_transformers_with_the_same_embeddings(hf_dir, tmp_path):
  directory, original = hf_dir
  towers, arch = pretrained.load(f"hf:{directory}")
  out = str(tmp_path / "export")
  export.export_weights(f"hf:{directory}", out)
  model = load_hf(out)
  images, tokens = random_inputs(seed=3)
  expected = hf_embeddings(original, images, tokens)
  exported = hf_embeddings(model, images, tokens)
  for name, e, g in zip(("image", "text", "logits"), expected, exported):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5, err_msg=name)
  tok = CLIPTokenizer.from_pretrained(out)
  assert tok("a red star")["input_ids"] == CLIPTokenizer.from_pretrained(directory)(
      "a red star")["input_ids"]
  assert model.config.text_config.eos_token_id == arch.eos_id


def test_import_export_import_is_the_identity(hf_dir, tmp_path):
  directory, _ = hf_dir
  arch, first = pretrained.read(f"hf:{directory}")
  towers = pretrained.towers_with(arch, first)
  out = str(tmp_path / "export")
  export.export_towers(towers, out, image_norm=arch.image_norm)
  arch_again, second = pretrained.read(f"hf:{out}")
  assert arch_again == arch
  assert set(first) == set(second)
  for path in first:
    np.testing.assert_array_equal(second[path], first[path], err_msg=str(path))


def native_towers(**overrides):
  """lang_image towers of CLIP's kind, as a config builds them (text pooled at the last non-pad
  token, GELU), every parameter random (a patch bias, LayerNorms that are not the identity)."""
  config = ml_collections.ConfigDict(dict(
      image="w32-d2-h2-mlp64/4", text="w24-d2-h3-mlp48", image_size=16, max_len=10,
      embed_dim=20, image_pool="cls", text_pool="eot", image_pre_norm=True, dtype="float32",
      logit_scale_init=2.0))
  config.update(overrides)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: build_two_tower(config, 50,
                                                                     rngs=nnx.Rngs(0))))
  rng = np.random.default_rng(1)
  state = jax.tree.map(lambda x: jnp.asarray(0.3 * rng.normal(size=x.shape), x.dtype), state)
  return nnx.merge(graphdef, state)


def test_lang_image_towers_export_with_eot_pooling_and_patch_bias(tmp_path):
  towers = native_towers()
  assert np.abs(np.asarray(towers.image.patch_embed.bias[...])).max() > 0
  out = str(tmp_path / "native")
  export.export_towers(towers, out, image_norm="minus_one_one", eos_id=1)
  model = load_hf(out)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(3, 16, 16, 3)).astype(np.float32)
  # lang_image's token layout: ids >= 2, end-of-text 1, then padding 0.
  tokens = np.zeros((3, 10), np.int64)
  for row, length in zip(tokens, (4, 10, 7)):
    row[:length - 1] = rng.integers(2, 50, length - 1)
    row[length - 1] = 1
  for e, g in zip(lang_image_embeddings(towers, images, tokens),
                  hf_embeddings(model, images, tokens)):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
  assert model.config.text_config.eos_token_id == 1


def test_towers_of_another_kind_cannot_be_exported(tmp_path):
  towers = native_towers(image_pool="gap", image_stem="conv", image_pre_norm=False,
                         text_pool="mean")
  with pytest.raises(CheckpointError, match="cannot be written as a CLIP model: it needs "
                     "class-token pooling .*; a patch stem .*; a LayerNorm before the first "
                     "ViT block .*; end-of-text pooling") as info:
    export.export_towers(towers, str(tmp_path))
  assert "\n" not in str(info.value)
  towers = native_towers()
  with pytest.raises(CheckpointError, match="need the tokenizer's end-of-text id"):
    architecture.of_towers(towers)
