"""Small random transformers CLIP models saved to disk, with a CLIP BPE vocabulary; no network.

The reference model has unequal widths (vision 48, text 40, joint 24), patch 8 on 64 px
images (the embedded data's size, so evaluation needs no resize), two blocks per tower and a
context of 32 tokens. Every parameter is perturbed from transformers' initialisation, so that
LayerNorms and biases are not the identity and zero.
"""

import os
import shutil
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import CLIPConfig, CLIPModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_vocab  # noqa: E402

IMAGE_SIZE, CONTEXT = 64, 32


@pytest.fixture(scope="session")
def vocab_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("clip_vocab"))
  clip_vocab.write(directory)
  return directory


def vocab_size() -> int:
  return len(clip_vocab.merges_and_vocab()[1])


def clip_config(**text_overrides) -> CLIPConfig:
  n = vocab_size()
  text = dict(hidden_size=40, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=CONTEXT, vocab_size=n, bos_token_id=n - 2,
              eos_token_id=n - 1, pad_token_id=n - 1)
  text.update(text_overrides)
  vision = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                image_size=IMAGE_SIZE, patch_size=8)
  for key in ("hidden_act", "layer_norm_eps"):
    if key in text:
      vision[key] = text[key]
  return CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)


def random_model(config: CLIPConfig, seed: int = 0) -> CLIPModel:
  torch.manual_seed(seed)
  model = CLIPModel(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  return model


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory, vocab_dir):
  """A saved CLIPModel folder with vocab.json + merges.txt, and the model itself."""
  directory = str(tmp_path_factory.mktemp("hf_clip"))
  model = random_model(clip_config())
  model.save_pretrained(directory)
  for name in ("vocab.json", "merges.txt"):
    shutil.copy(os.path.join(vocab_dir, name), directory)
  return directory, model


def random_inputs(seed: int = 0, batch: int = 5):
  """Normalised float images [B, H, W, 3] (what the towers take) and token rows in CLIP's
  layout (start, ids, end, padding), of assorted lengths up to the full context."""
  rng = np.random.default_rng(seed)
  images = rng.normal(size=(batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
  n = vocab_size()
  tokens = np.zeros((batch, CONTEXT), np.int64)
  for row, length in zip(tokens, [3, CONTEXT, 9, 17, 5][:batch]):
    row[0] = n - 2
    row[1:length - 1] = rng.integers(0, n - 2, length - 2)
    row[length - 1] = n - 1
  return images, tokens


def hf_embeddings(model, images, tokens):
  """transformers' unit embeddings and logits for NHWC images and token rows."""
  with torch.no_grad():
    out = model(input_ids=torch.as_tensor(tokens),
                pixel_values=torch.as_tensor(images.transpose(0, 3, 1, 2)))
  return out.image_embeds.numpy(), out.text_embeds.numpy(), out.logits_per_image.numpy()


@nnx.jit
def _embed(towers, images, tokens):
  out = towers(images, tokens)
  return (out["image_emb"], out["text_emb"],
          jnp.exp(out["logit_scale"]) * out["image_emb"] @ out["text_emb"].T)


def lang_image_embeddings(towers, images, tokens):
  """lang_image's unit embeddings and logits (exp(logit_scale) times the cosines)."""
  return tuple(np.asarray(x) for x in _embed(towers, jnp.asarray(images),
                                             jnp.asarray(tokens, jnp.int32)))
