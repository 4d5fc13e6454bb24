"""The trained module: shared two towers plus the heads that objective terms own.

Parameter paths start with `towers.` (image/text towers, projections, logit scale) or
`heads.<term name>.`; sharding rules and checkpoints see the same names.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image import objectives
from lang_image.models import two_tower, variants


def preprocess_images(images: jax.Array, image_size: int) -> jax.Array:
  """uint8 [B, H, W, 3] -> float32 in [-1, 1] at the model's resolution, on device.

  Batches travel host->device as uint8 (4x fewer bytes than float32).
  """
  x = images.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  if x.shape[1] != image_size or x.shape[2] != image_size:
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[3]), "bilinear")
  return x


class Pretrainer(nnx.Module):

  def __init__(self, model_cfg, vocab_size: int, terms, *, rngs: nnx.Rngs):
    self.towers = two_tower.build_two_tower(model_cfg, vocab_size, rngs=rngs)
    dims = {
        "image_width": variants.parse_vit(model_cfg.image).width,
        "text_width": variants.parse_text(model_cfg.text).width,
        "embed_dim": model_cfg.embed_dim,
    }
    self.heads = nnx.Dict(objectives.make_heads(terms, dims, rngs))
    self.image_size = int(model_cfg.image_size)
    self.logit_scale_max = float(model_cfg.logit_scale_max)
    term = objectives.embedding_term(terms)
    # (term name, its module) when evaluation uses a term's own space; static, not state.
    self._embedding = None if term is None else (term.name, term.module)

  def __call__(self, images: jax.Array, tokens: jax.Array) -> dict:
    return self.towers(preprocess_images(images, self.image_size), tokens)

  def post_update(self, step, total_steps: int) -> None:
    """Constraints and teacher updates applied after every optimizer step."""
    self.towers.clamp_logit_scale(0.0, self.logit_scale_max)
    for head in self.heads.values():
      if hasattr(head, "post_update"):
        head.post_update(step, total_steps)

  def embed_images(self, images: jax.Array) -> jax.Array:
    """Unit embeddings in the evaluation space (the towers' or the embedding term's)."""
    features, emb = self.towers.encode_image(preprocess_images(images, self.image_size))
    return self._embed("image", features, emb)

  def embed_texts(self, tokens: jax.Array) -> jax.Array:
    features, emb = self.towers.encode_text(tokens)
    return self._embed("text", features, emb)

  def image_features(self, images: jax.Array) -> jax.Array:
    """Pooled image tower features (before projections and heads), for linear probes."""
    return self.towers.encode_image(preprocess_images(images, self.image_size))[0]

  def _embed(self, modality, features, emb):
    if self._embedding is None:
      return emb
    name, module = self._embedding
    return module.embed(self.heads[name], modality, features)
