"""The trained module: shared two towers plus the heads that objective terms own.

The heads come from outside (`make_heads`, built by the trainer from the objective terms), so
models never import objectives.

Parameter paths start with `towers.` (image/text towers, projections, logit scale) or
`heads.<term name>.`; sharding rules and checkpoints see the same names.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.models import two_tower, variants


# Per-channel (mean, std) of pixels in [0, 1] for `config.model.image_norm`. lang_image's own
# towers see [-1, 1]; imported CLIP towers see the statistics they were trained with.
IMAGE_NORMS = {
    "minus_one_one": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def preprocess_images(images: jax.Array, image_size: int,
                      norm: str = "minus_one_one") -> jax.Array:
  """uint8 [B, H, W, 3] -> float32 normalised per `norm` (default: [-1, 1]) at the model's
  resolution, on device.

  Batches travel host->device as uint8 (4x fewer bytes than float32).
  """
  if norm == "minus_one_one":
    x = images.astype(jnp.float32) * (2.0 / 255.0) - 1.0
  else:
    mean, std = (jnp.asarray(v, jnp.float32) for v in IMAGE_NORMS[norm])
    x = (images.astype(jnp.float32) * (1.0 / 255.0) - mean) / std
  if x.shape[1] != image_size or x.shape[2] != image_size:
    x = jax.image.resize(x, (x.shape[0], image_size, image_size, x.shape[3]), "bilinear")
  return x


class Pretrainer(nnx.Module):
  """Towers plus heads.

  make_heads(dims, rngs) -> {name: head module}: the trainable modules the objective terms
  own; dims holds the towers' `image_width`, `text_width` and `embed_dim`.
  embedding: None when evaluation uses the towers' joint space, else (head name,
  embed(head, modality, features) -> unit embeddings) for a head's own space.
  """

  def __init__(self, model_cfg, vocab_size: int, make_heads: Callable[[dict, nnx.Rngs], dict],
               embedding: tuple[str, Callable] | None = None, *, rngs: nnx.Rngs):
    self.towers = two_tower.build_two_tower(model_cfg, vocab_size, rngs=rngs)
    dims = {
        "image_width": variants.parse_vit(model_cfg.image).width,
        "text_width": variants.parse_text(model_cfg.text).width,
        "embed_dim": model_cfg.embed_dim,
    }
    self.heads = nnx.Dict(make_heads(dims, rngs))
    self.image_size = int(model_cfg.image_size)
    self.image_norm = model_cfg.image_norm
    if self.image_norm not in IMAGE_NORMS:
      raise ValueError(f"Unknown config.model.image_norm {self.image_norm!r}; known: "
                       f"{', '.join(IMAGE_NORMS)}.")
    self.logit_scale_max = float(model_cfg.logit_scale_max)
    # Static, not state.
    self._embedding = embedding

  def __call__(self, images: jax.Array, tokens: jax.Array) -> dict:
    return self.towers(self.preprocess(images), tokens)

  def preprocess(self, images: jax.Array) -> jax.Array:
    return preprocess_images(images, self.image_size, self.image_norm)

  def post_update(self, step, total_steps: int) -> None:
    """Constraints and teacher updates applied after every optimizer step."""
    self.towers.clamp_logit_scale(0.0, self.logit_scale_max)
    for head in self.heads.values():
      if hasattr(head, "post_update"):
        head.post_update(step, total_steps)

  def embed_images(self, images: jax.Array) -> jax.Array:
    """Unit embeddings in the evaluation space (the towers' or the embedding term's)."""
    features, emb = self.towers.encode_image(self.preprocess(images))
    return self._embed("image", features, emb)

  def embed_texts(self, tokens: jax.Array) -> jax.Array:
    features, emb = self.towers.encode_text(tokens)
    return self._embed("text", features, emb)

  def image_features(self, images: jax.Array) -> jax.Array:
    """Pooled image tower features (before projections and heads), for linear probes."""
    return self.towers.encode_image(self.preprocess(images))[0]

  def text_features(self, tokens: jax.Array) -> jax.Array:
    """Pooled text tower features (before projections and heads)."""
    return self.towers.encode_text(tokens)[0]

  def _embed(self, modality, features, emb):
    if self._embedding is None:
      return emb
    name, embed = self._embedding
    return embed(self.heads[name], modality, features)
