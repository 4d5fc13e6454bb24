"""Text transformer tower.

Parameter paths: token_embed.embedding, pos_embed, encoder.*.

Token convention: each row is ids + EOS followed by `pad_id` padding, so the
last non-pad position holds the end-of-text token. With causal attention no
real token ever attends to the trailing padding, which is what makes "eot"
and "mean" pooling independent of how much padding follows.

Imported CLIP towers pool where their tokenizer put the end-of-text token:
"argmax" takes the position of the largest id in the row (OpenAI CLIP, whose
<|endoftext|> is the last id of its vocabulary), "eos" the first position
holding `eos_id` (Hugging Face CLIPTextModel); neither depends on the pad id.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.models import layers, norms
from lang_image.models import matmul_precision as matmul_precision_lib
from lang_image.models.variants import TextSpec

POOLS = ("eot", "mean", "first", "argmax", "eos")


class TextTransformer(nnx.Module):
  """int32 tokens [B, L] (L <= max_len) -> pooled features [B, width].

  Pooling: "eot" (features at the last non-pad token), "mean" (mean over
  non-pad tokens), "first", "argmax" or "eos" (see the module docstring).
  "first" only makes sense with causal=False,
  since under a causal mask the first token sees nothing but itself.
  With causal=False pad positions are masked out as keys instead.
  """

  def __init__(self, spec: TextSpec, vocab_size: int, max_len: int,
               pool: str = "eot", pad_id: int = 0, dtype=jnp.float32, *,
               causal: bool = True, param_dtype=jnp.float32,
               act: str = "gelu", attn_impl: str | None = None,
               eos_id: int | None = None, remat: str = "none",
               matmul_precision: str = "default", rngs: nnx.Rngs):
    if pool not in POOLS:
      raise ValueError(f"Unknown text pool {pool!r}; known: {', '.join(POOLS)}.")
    if pool == "eos" and eos_id is None:
      raise ValueError("Text pool 'eos' needs the end-of-text id: set eos_id.")
    self.spec = spec
    self.width = spec.width
    self.vocab_size = vocab_size
    self.max_len = max_len
    self.pool = pool
    self.pad_id = pad_id
    self.eos_id = eos_id
    self.causal = causal
    self.dtype = dtype
    self.matmul_precision = matmul_precision_lib.check_matmul_precision(matmul_precision)
    self.token_embed = nnx.Embed(
        vocab_size, spec.width, dtype=dtype, param_dtype=param_dtype,
        embedding_init=layers.embed_init(0.02), rngs=rngs)
    # Smaller than the token init so position does not swamp identity early.
    self.pos_embed = nnx.Param(layers.embed_init(0.01)(
        rngs.params(), (max_len, spec.width), param_dtype))
    self.encoder = layers.Encoder(
        spec.width, spec.depth, spec.heads, spec.mlp_dim, dtype=dtype,
        param_dtype=param_dtype, act=act, attn_impl=attn_impl, remat=remat,
        matmul_precision=matmul_precision, rngs=rngs)

  def token_features(self, tokens: jax.Array) -> jax.Array:
    """Per-token features [B, L, width] after the final LayerNorm."""
    length = tokens.shape[1]
    if length > self.max_len:
      raise ValueError(
          f"Token length {length} exceeds max_len {self.max_len}.")
    x = self.token_embed(tokens)
    x = x + self.pos_embed[...][:length].astype(self.dtype)
    mask = None
    if not self.causal:
      mask = (tokens != self.pad_id)[:, None, None, :]
    return self.encoder(x, causal=self.causal, mask=mask)

  def eot_index(self, tokens: jax.Array) -> jax.Array:
    """Index of the pooled end-of-text token per row: the last non-pad token (0 for an
    all-pad row); for "argmax" the first largest id; for "eos" the first `eos_id` (0 if
    the row has none)."""
    if self.pool == "argmax":
      return jnp.argmax(tokens, axis=1).astype(jnp.int32)
    if self.pool == "eos":
      return jnp.argmax(tokens == self.eos_id, axis=1).astype(jnp.int32)
    pos = jnp.arange(tokens.shape[1], dtype=jnp.int32)
    return jnp.max(jnp.where(tokens != self.pad_id, pos, 0), axis=1)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = self.token_features(tokens)
    if self.pool == "first":
      return x[:, 0]
    if self.pool in ("eot", "argmax", "eos"):
      idx = self.eot_index(tokens)
      return jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]
    valid = (tokens != self.pad_id).astype(jnp.float32)[..., None]
    total = jnp.sum(x.astype(jnp.float32) * valid, axis=1)
    return (total / jnp.maximum(valid.sum(axis=1), 1.0)).astype(self.dtype)
