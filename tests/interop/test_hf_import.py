"""transformers CLIPModel folders imported into lang_image's towers compute the same thing."""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import (clip_config, hf_embeddings, lang_image_embeddings, random_inputs,
                      random_model)
from lang_image.interop import hf, pretrained
from lang_image.interop.tensors import CheckpointError


def test_embeddings_and_logits_equal_transformers(hf_dir):
  directory, model = hf_dir
  towers, arch = pretrained.load(f"hf:{directory}")
  assert (arch.image.width, arch.text.width, arch.embed_dim, arch.image.patch) == (48, 40, 24, 8)
  assert (arch.act, arch.text_pool, arch.image_norm) == ("quick_gelu", "eos", "clip")
  images, tokens = random_inputs()
  expected = hf_embeddings(model, images, tokens)
  got = lang_image_embeddings(towers, images, tokens)
  for name, e, g in zip(("image", "text", "logits"), expected, got):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5, err_msg=name)


def test_gelu_other_epsilon_and_legacy_end_token(tmp_path):
  """hidden_act gelu, LayerNorm eps 1e-6, and eos_token_id 2: configs from before transformers
  fixed that id pool at the largest token id."""
  model = random_model(clip_config(hidden_act="gelu", layer_norm_eps=1e-6, eos_token_id=2), 1)
  model.save_pretrained(str(tmp_path))
  towers, arch = pretrained.load(f"hf:{tmp_path}")
  assert (arch.act, arch.ln_eps, arch.text_pool) == ("gelu", 1e-6, "argmax")
  images, tokens = random_inputs(seed=1)
  for e, g in zip(hf_embeddings(model, images, tokens),
                  lang_image_embeddings(towers, images, tokens)):
    np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)


def test_model_config_fields_build_the_same_towers(hf_dir):
  directory, _ = hf_dir
  fields = pretrained.read_architecture(f"hf:{directory}").model_fields()
  assert fields["image"] == "w48-d2-h4-mlp96/8" and fields["text"] == "w40-d2-h4-mlp80"
  assert (fields["image_size"], fields["max_len"], fields["embed_dim"]) == (64, 32, 24)
  assert fields["image_pre_norm"] and fields["image_pool"] == "cls"


def copy_of(directory, tmp_path):
  out = str(tmp_path / "copy")
  shutil.copytree(directory, out)
  return out


def test_unsupported_checkpoints_name_what_is_missing(hf_dir, tmp_path):
  directory, _ = hf_dir
  with pytest.raises(CheckpointError, match="names no weights"):
    pretrained.read("clip:/somewhere")
  with pytest.raises(CheckpointError, match="is not a folder"):
    pretrained.read(f"hf:{tmp_path / 'nothing'}")

  other = copy_of(directory, tmp_path)
  config_path = os.path.join(other, "config.json")
  config = json.load(open(config_path))
  json.dump(dict(config, model_type="siglip"), open(config_path, "w"))
  with pytest.raises(CheckpointError, match="holds a 'siglip' model; only .*CLIPModel"):
    pretrained.read(f"hf:{other}")
  config["text_config"]["hidden_act"] = "relu"
  json.dump(config, open(config_path, "w"))
  with pytest.raises(CheckpointError, match="activations .*'relu'.* not supported"):
    pretrained.read(f"hf:{other}")
  config["text_config"]["hidden_act"] = "quick_gelu"
  json.dump(config, open(config_path, "w"))

  weights = os.path.join(other, "model.safetensors")
  tensors = load_file(weights)
  save_file({**tensors, "logit_bias": np.zeros((1,), np.float32)}, weights,
            metadata={"format": "pt"})
  with pytest.raises(CheckpointError, match="do not model, e.g. \\['logit_bias'\\]"):
    pretrained.read(f"hf:{other}")
  del tensors["text_model.final_layer_norm.weight"]
  save_file(tensors, weights, metadata={"format": "pt"})
  with pytest.raises(CheckpointError,
                     match="lacks the tensor 'text_model.final_layer_norm.weight'"):
    pretrained.read(f"hf:{other}")
  os.remove(weights)
  with pytest.raises(CheckpointError, match="holds no weights"):
    pretrained.read(f"hf:{other}")


def test_config_that_disagrees_with_the_weights(hf_dir, tmp_path):
  directory, _ = hf_dir
  other = copy_of(directory, tmp_path)
  config_path = os.path.join(other, "config.json")
  config = json.load(open(config_path))
  config["vision_config"]["intermediate_size"] = 64
  json.dump(config, open(config_path, "w"))
  with pytest.raises(CheckpointError,
                     match="fc1.bias the shape \\(96,\\), but the model has \\(64,\\)"):
    pretrained.read(f"hf:{other}")


def test_pixel_statistics_come_from_the_preprocessor_config(hf_dir, tmp_path):
  directory, _ = hf_dir
  other = copy_of(directory, tmp_path)
  path = os.path.join(other, "preprocessor_config.json")
  json.dump({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, open(path, "w"))
  assert hf.read_architecture(other).image_norm == "minus_one_one"
  json.dump({"image_mean": [0.1, 0.2, 0.3], "image_std": [1, 1, 1]}, open(path, "w"))
  with pytest.raises(CheckpointError, match="match none of the known normalisations"):
    hf.read_architecture(other)
