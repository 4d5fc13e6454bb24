"""CLIP-style two-tower model: image ViT + text transformer + projections.

Parameter paths: image.*, text.*, image_proj.kernel, text_proj.kernel,
logit_scale, and logit_bias when a bias init is configured (sigmoid loss).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.models import attention_kernels, layers, norms, variants
from lang_image.models import matmul_precision as matmul_precision_lib
from lang_image.models.text import TextTransformer
from lang_image.models.vit import VisionTransformer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
  """Unit vectors along `axis`, in at least float32 (float64 stays: reference tests)."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis, keepdims=True), eps))


class TwoTower(nnx.Module):
  def __init__(self, image: VisionTransformer, text: TextTransformer,
               embed_dim: int, *, logit_scale_init: float = math.log(1 / 0.07),
               logit_bias_init: float | None = None, rngs: nnx.Rngs):
    self.image = image
    self.text = text
    self.embed_dim = embed_dim

    # Std width**-0.5 keeps the pre-normalisation embedding O(1) whatever
    # the tower width.
    def proj(tower):
      return layers.dense(
          tower.width, embed_dim, tower.dtype, jnp.float32, rngs, use_bias=False,
          kernel_init=nnx.initializers.normal(tower.width ** -0.5),
          matmul_precision=tower.matmul_precision)

    self.image_proj = proj(image)
    self.text_proj = proj(text)
    self.logit_scale = nnx.Param(jnp.asarray(logit_scale_init, jnp.float32))
    self.logit_bias = (None if logit_bias_init is None else
                       nnx.Param(jnp.asarray(logit_bias_init, jnp.float32)))

  def encode_image(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """-> (pooled features [B, width] float32, unit-norm emb [B, D] float32)."""
    feats = self.image(images)
    return feats.astype(jnp.float32), l2_normalize(self.image_proj(feats))

  def encode_text(self, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """-> (pooled features [B, width] float32, unit-norm emb [B, D] float32)."""
    feats = self.text(tokens)
    return feats.astype(jnp.float32), l2_normalize(self.text_proj(feats))

  def __call__(self, images: jax.Array, tokens: jax.Array) -> dict:
    """Returns features, embeddings and the raw log-scale t (scale = exp(t))."""
    image_features, image_emb = self.encode_image(images)
    text_features, text_emb = self.encode_text(tokens)
    return dict(image_features=image_features, text_features=text_features,
                image_emb=image_emb, text_emb=text_emb, **self.scalar_outputs())

  def scalar_outputs(self) -> dict:
    """The outputs that do not depend on the batch: the log-scale (and bias, if any)."""
    out = {"logit_scale": self.logit_scale[...]}
    if self.logit_bias is not None:
      out["logit_bias"] = self.logit_bias[...]
    return out

  def clamp_logit_scale(self, lo: float, hi: float) -> None:
    """Clamp the log-scale in place; safe inside jax.jit on a merged module."""
    self.logit_scale[...] = jnp.clip(self.logit_scale[...], lo, hi)


def build_two_tower(cfg, vocab_size: int, *, rngs: nnx.Rngs) -> TwoTower:
  """Build a TwoTower from a config (ml_collections.ConfigDict or any object
  with attributes).

  Required fields:
    image: str             ViT variant, e.g. "B/16", "So400m/14", "mu/8".
    text: str              text variant, e.g. "B", "mu".
    image_size: int        square input resolution; divisible by the patch.
    max_len: int           maximum token length (position table size).
    embed_dim: int         shared embedding dimension.
    image_pool: str        "cls" | "gap" | "map".
    text_pool: str         "eot" | "mean" | "first" | "argmax" | "eos".
    dtype: str             compute dtype, "float32" | "bfloat16".
    logit_scale_init: float  initial log-scale, e.g. log(1/0.07) ~= 2.659.
  Optional fields (default in brackets):
    logit_bias_init [None]  float adds a learned logit_bias (sigmoid loss).
    text_causal [True]      causal text attention.
    pad_id [0]              padding token id.
    act ["gelu"]            "gelu" | "gelu_tanh" | "quick_gelu".
    image_pre_norm [False]  LayerNorm before the first ViT block (OpenAI).
    attention ["xla"]       "xla" | "cudnn" | "auto": the attention kernel
                            (attention_kernels.py; "auto" is resolved against jax's
                            default devices here).
    remat ["none"]          rematerialisation policy of every block, layers.REMAT_POLICIES.
    eos_id [None]           end-of-text id, needed by text_pool "eos".
    ln_eps [1e-5]           epsilon of every LayerNorm (norms.LN_EPS).
    matmul_precision ["default"]  matmul_precision.MATMUL_PRECISIONS: "bf16_f32acc" runs
                            every tower matmul on bfloat16 inputs with float32
                            accumulation and results.
  """
  if cfg.dtype not in DTYPES:
    raise ValueError(f"Unknown dtype {cfg.dtype!r}; known: {', '.join(DTYPES)}.")
  dtype = DTYPES[cfg.dtype]
  act = getattr(cfg, "act", "gelu")
  attn_impl = attention_kernels.implementation(cfg)
  remat = getattr(cfg, "remat", "none")
  matmul_precision = matmul_precision_lib.check_matmul_precision(
      getattr(cfg, "matmul_precision", "default"))
  image = VisionTransformer(
      variants.parse_vit(cfg.image), cfg.image_size, pool=cfg.image_pool,
      dtype=dtype, act=act, pre_norm=getattr(cfg, "image_pre_norm", False),
      attn_impl=attn_impl, stem=getattr(cfg, "image_stem", "patch"), remat=remat,
      matmul_precision=matmul_precision, rngs=rngs)
  text = TextTransformer(
      variants.parse_text(cfg.text), vocab_size, cfg.max_len,
      pool=cfg.text_pool, pad_id=getattr(cfg, "pad_id", 0), dtype=dtype,
      causal=getattr(cfg, "text_causal", True), act=act, attn_impl=attn_impl,
      eos_id=getattr(cfg, "eos_id", None), remat=remat, matmul_precision=matmul_precision,
      rngs=rngs)
  towers = TwoTower(image, text, cfg.embed_dim,
                    logit_scale_init=cfg.logit_scale_init,
                    logit_bias_init=getattr(cfg, "logit_bias_init", None),
                    rngs=rngs)
  ln_eps = getattr(cfg, "ln_eps", norms.LN_EPS)
  if ln_eps != norms.LN_EPS:
    norms.set_norm_epsilon(towers, ln_eps)
  return towers
