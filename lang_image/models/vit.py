"""Vision Transformer image tower.

Parameter paths: patch_embed.{kernel,bias}, pos_embed, cls_token (pool="cls"),
ln_pre (pre_norm=True), encoder.*, map_head.* (pool="map").

The patch embedding is a Linear over flattened (py, px, channel) patches. Its
kernel [p*p*3, width] is exactly a stride-p conv kernel [p, p, 3, width]
reshaped, so conv checkpoints load with a reshape. On CPU the Linear measured
faster than nnx.Conv for the backward pass (~1.5-2x for mu/8 at 64 px and
B/16 at 224 px) and no slower forward, which is what training pays for.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lang_image.models import conv_stem, layers, norms
from lang_image.models import matmul_precision as matmul_precision_lib
from lang_image.models.variants import VitSpec

POOLS = ("cls", "gap", "map")


class MAPHead(nnx.Module):
  """Multihead attention pooling: a learned probe attends over all tokens.

  Paths: probe, q, kv (fused [k | v]), out, ln, mlp.{fc1,fc2}.
  """

  def __init__(self, width: int, heads: int, mlp_dim: int, *, dtype,
               param_dtype=jnp.float32, act: str = "gelu",
               attn_impl: str | None = None, matmul_precision: str = "default",
               rngs: nnx.Rngs):
    self.dtype = dtype
    self.heads = heads
    self.attn_impl = attn_impl
    self.matmul_precision = matmul_precision
    mp = dict(matmul_precision=matmul_precision)
    self.probe = nnx.Param(nnx.initializers.xavier_uniform()(
        rngs.params(), (1, 1, width), param_dtype))
    self.q = layers.dense(width, width, dtype, param_dtype, rngs, **mp)
    self.kv = layers.dense(width, 2 * width, dtype, param_dtype, rngs,
                           kernel_init=layers.fused_xavier_uniform(2), **mp)
    self.out = layers.dense(width, width, dtype, param_dtype, rngs, **mp)
    self.ln = norms.layer_norm(width, rngs, param_dtype)
    self.mlp = layers.Mlp(width, mlp_dim, dtype=dtype,
                          param_dtype=param_dtype, act=act, rngs=rngs, **mp)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, t, d = x.shape
    hd = d // self.heads
    probe = jnp.broadcast_to(self.probe[...].astype(self.dtype), (b, 1, d))
    q = self.q(probe).reshape(b, 1, self.heads, hd)
    kv = layers.apply_2d(self.kv, x).reshape(b, t, 2, self.heads, hd)
    y = layers.attention(q, kv[:, :, 0], kv[:, :, 1], implementation=self.attn_impl,
                         matmul_precision=self.matmul_precision)
    y = self.out(y.reshape(b, 1, d))
    y = y + self.mlp(norms.apply_norm(self.ln, y, self.dtype))
    return y[:, 0]


class VisionTransformer(nnx.Module):
  """[B, H, W, 3] normalised float images -> pooled features [B, width].

  Pooling: "cls" (class token), "gap" (mean over patch tokens) or "map"
  (attention pooling with a learned probe, as in SigLIP). For "cls" and
  "gap" the output is taken after the encoder's final LayerNorm; "map" pools
  those normalised tokens through its own residual attention + MLP head.
  """

  def __init__(self, spec: VitSpec, image_size: int, pool: str = "cls",
               dtype=jnp.float32, *, param_dtype=jnp.float32,
               act: str = "gelu", pre_norm: bool = False,
               attn_impl: str | None = None, stem: str = "patch", remat: str = "none",
               matmul_precision: str = "default", rngs: nnx.Rngs):
    if pool not in POOLS:
      raise ValueError(f"Unknown image pool {pool!r}; known: {', '.join(POOLS)}.")
    if image_size % spec.patch:
      raise ValueError(
          f"image_size {image_size} is not divisible by patch size "
          f"{spec.patch}.")
    self.spec = spec
    self.width = spec.width
    self.image_size = image_size
    self.pool = pool
    self.dtype = dtype
    p, w = spec.patch, spec.width
    num_tokens = (image_size // p) ** 2 + (pool == "cls")

    if stem not in ("patch", "conv"):
      raise ValueError(f"Unknown image stem {stem!r}; known: patch, conv.")
    # 'conv': see conv_stem.py; same token grid, better sample efficiency for small models.
    self.matmul_precision = matmul_precision_lib.check_matmul_precision(matmul_precision)
    self.patch_embed = (layers.dense(p * p * 3, w, dtype, param_dtype, rngs,
                                     matmul_precision=matmul_precision)
                        if stem == "patch" else None)
    self.conv_stem = (conv_stem.ConvStem(p, w, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                      if stem == "conv" else None)
    self.pos_embed = nnx.Param(layers.embed_init()(
        rngs.params(), (num_tokens, w), param_dtype))
    self.cls_token = (nnx.Param(layers.embed_init()(
        rngs.params(), (w,), param_dtype)) if pool == "cls" else None)
    # OpenAI CLIP normalises embeddings before the first block; off by
    # default but needed to load those checkpoints.
    self.ln_pre = norms.layer_norm(w, rngs, param_dtype) if pre_norm else None
    self.encoder = layers.Encoder(
        w, spec.depth, spec.heads, spec.mlp_dim, dtype=dtype,
        param_dtype=param_dtype, act=act, attn_impl=attn_impl, remat=remat,
        matmul_precision=matmul_precision, rngs=rngs)
    self.map_head = (MAPHead(w, spec.heads, spec.mlp_dim, dtype=dtype,
                             param_dtype=param_dtype, act=act,
                             attn_impl=attn_impl, matmul_precision=matmul_precision,
                             rngs=rngs)
                     if pool == "map" else None)

  def _check_resolution(self, images: jax.Array) -> None:
    h, w = images.shape[1:3]
    if h != self.image_size or w != self.image_size:
      raise ValueError(
          f"Expected {self.image_size}x{self.image_size} images, got "
          f"{h}x{w}.")

  def patchify(self, images: jax.Array) -> jax.Array:
    """[B, H, W, C] -> [B, N, p*p*C], patches in row-major order."""
    self._check_resolution(images)
    b, h, w, c = images.shape
    p = self.spec.patch
    x = images.reshape(b, h // p, p, w // p, p, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p),
                                                p * p * c)

  def token_features(self, images: jax.Array) -> jax.Array:
    """Per-token features [B, T, width] after the final LayerNorm."""
    if self.conv_stem is not None:
      self._check_resolution(images)
      x = self.conv_stem(images)
    else:
      x = layers.apply_2d(self.patch_embed, self.patchify(images).astype(self.dtype))
    if self.cls_token is not None:
      cls = self.cls_token[...].astype(self.dtype)
      cls = jnp.broadcast_to(cls, (x.shape[0], 1, x.shape[-1]))
      x = jnp.concatenate([cls, x], axis=1)
    x = x + self.pos_embed[...].astype(self.dtype)
    if self.ln_pre is not None:
      x = norms.apply_norm(self.ln_pre, x, self.dtype)
    return self.encoder(x)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = self.token_features(images)
    if self.pool == "cls":
      return x[:, 0]
    if self.pool == "gap":
      # Mean in float32: summing hundreds of bf16 tokens loses precision.
      return x.astype(jnp.float32).mean(axis=1).astype(self.dtype)
    return self.map_head(x)
