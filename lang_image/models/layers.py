"""Pre-LayerNorm transformer encoder shared by the image and text towers.

Parameter paths are part of the public contract (sharding rules match them by
regex, checkpoint converters map them to OpenAI/HF names), so they are kept
short and stable:

  blocks.{i}.ln1.{scale,bias}
  blocks.{i}.attn.qkv.{kernel,bias}   # columns ordered [q | k | v], head-major
  blocks.{i}.attn.out.{kernel,bias}
  blocks.{i}.ln2.{scale,bias}
  blocks.{i}.mlp.fc1.{kernel,bias}
  blocks.{i}.mlp.fc2.{kernel,bias}
  ln_final.{scale,bias}

Precision policy: parameters live in `param_dtype` (float32); matmuls run in
`dtype` (e.g. bfloat16) and so does the residual stream; LayerNorm statistics
and the attention softmax are always float32.

`matmul_precision` (matmul_precision.py) refines how the matmuls run, whatever `dtype`.
LayerNorm runs through norms.py.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from lang_image.models.matmul_precision import (bf16_dot_general, bf16_matmul,
                                                check_matmul_precision, materialised_transpose,
                                                relayout)
from lang_image.models.norms import apply_norm, layer_norm

Dtype = Any



def _quick_gelu(x):
  return x * jax.nn.sigmoid(1.702 * x)


def exact_gelu(x):
  """x * Phi(x), written with erf as PyTorch's nn.GELU computes it.

  jax.nn.gelu(approximate=False) evaluates the same function as 0.5 x erfc(-x / sqrt 2);
  XLA:CPU's erfc is a branchy polynomial, and this form made the benchmark model's
  training step 8% faster (benchmarks/RESULTS.md). It agrees with a float64 reference to
  about one float32 ulp of the output (tests/models/test_layers.py).
  """
  return 0.5 * x * (1.0 + lax.erf(x * (1.0 / math.sqrt(2.0))))


# Exact (erf) GELU is the default: it is what PyTorch nn.GELU computes, so HF /
# open_clip weights reproduce exactly. "quick_gelu" is what the original
# OpenAI CLIP checkpoints were trained with.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": exact_gelu,
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": _quick_gelu,
}

xavier_uniform = nnx.initializers.xavier_uniform()
zeros = nnx.initializers.zeros_init()


def embed_init(stddev: float = 0.02):
  return nnx.initializers.normal(stddev=stddev)


def fused_xavier_uniform(n: int):
  """Xavier init for a kernel that fuses `n` square projections column-wise.

  Plain xavier on the (d, n*d) kernel would count n*d as fan_out and shrink
  q/k/v by sqrt((1+n)/2); initialise each slice as if it were separate.
  """
  base = nnx.initializers.xavier_uniform(in_axis=-2, out_axis=-1, batch_axis=(0,))

  def init(key, shape, dtype=jnp.float32):
    fan_in, total = shape
    k = base(key, (n, fan_in, total // n), dtype)
    return jnp.moveaxis(k, 0, 1).reshape(fan_in, total)

  return init


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, mask: jax.Array | None = None,
              causal: bool = False, implementation: str | None = None,
              matmul_precision: str = "default") -> jax.Array:
  """Multi-head attention, q [B, T, N, H], k and v [B, S, N, H] -> [B, T, N, H].

  "default": jax.nn.dot_product_attention. "bf16_f32acc": with an explicit
  `implementation` such as "cudnn", the same call on bfloat16 q, k, v (the fused kernels
  accumulate in float32); otherwise head-major products through `bf16_matmul` with the
  softmax in float32, computing what jax.nn.dot_product_attention's XLA path computes
  (scale 1/sqrt(H), masked logits set to a large negative number).
  """
  if matmul_precision == "default":
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal,
                                        implementation=implementation)
  check_matmul_precision(matmul_precision)
  if implementation not in (None, "xla"):
    bf = jnp.bfloat16
    return jax.nn.dot_product_attention(
        q.astype(bf), k.astype(bf), v.astype(bf), mask=mask, is_causal=causal,
        implementation=implementation).astype(q.dtype)
  t, s = q.shape[1], k.shape[1]
  # Head-major bf16 copies [B, N, T, H]: every product below is then a row-major
  # batched matmul (see materialised_transpose).
  head_major = lambda x: relayout(x.astype(jnp.bfloat16), (0, 2, 1, 3))
  logits = bf16_matmul(head_major(q), head_major(k), True)             # [B, N, T, S]
  logits = logits * (1.0 / math.sqrt(q.shape[-1]))
  keep = None
  if mask is not None:
    keep = jnp.broadcast_to(mask, logits.shape)
  if causal:
    tri = jnp.tril(jnp.ones((t, s), jnp.bool_))
    keep = tri if keep is None else keep & tri
  if keep is not None:
    logits = jnp.where(keep, logits, -0.7 * jnp.finfo(jnp.float32).max)
  probs = jax.nn.softmax(logits, axis=-1)
  out = bf16_matmul(probs, head_major(v))                              # [B, N, T, H]
  # Rounded to bf16 here: the output projection takes bf16 inputs anyway.
  return relayout(out.astype(jnp.bfloat16), (0, 2, 1, 3)).astype(q.dtype)


def apply_2d(fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
  """Applies a per-token map on [..., D] as one [N, D] matrix.

  On XLA:CPU the backward pass of a GELU MLP over a 2D [B*T, D] input measured
  ~3x faster than over [B, T, D] (the kernel gradient otherwise contracts two
  axes), ~15% on a whole mu/8 train step; the reshape is free on every backend.
  """
  y = fn(x.reshape(-1, x.shape[-1]))
  return y.reshape(*x.shape[:-1], y.shape[-1])


def dense(din: int, dout: int, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs,
          kernel_init=xavier_uniform, use_bias: bool = True,
          matmul_precision: str = "default") -> nnx.Linear:
  extra = {}
  if check_matmul_precision(matmul_precision) == "bf16_f32acc":
    extra["dot_general"] = bf16_dot_general
  return nnx.Linear(din, dout, use_bias=use_bias, dtype=dtype,
                    param_dtype=param_dtype, kernel_init=kernel_init,
                    bias_init=zeros, rngs=rngs, **extra)


class Attention(nnx.Module):
  """Multi-head self-attention with one fused qkv projection."""

  def __init__(self, width: int, heads: int, *, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32,
               implementation: str | None = None, matmul_precision: str = "default",
               rngs: nnx.Rngs):
    if width % heads:
      raise ValueError(f"width {width} is not divisible by heads {heads}.")
    self.heads = heads
    self.head_dim = width // heads
    self.implementation = implementation
    self.matmul_precision = matmul_precision
    self.qkv = dense(width, 3 * width, dtype, param_dtype, rngs,
                     kernel_init=fused_xavier_uniform(3), matmul_precision=matmul_precision)
    self.out = dense(width, width, dtype, param_dtype, rngs,
                     matmul_precision=matmul_precision)

  def __call__(self, x: jax.Array, *, causal: bool = False,
               mask: jax.Array | None = None) -> jax.Array:
    b, t, d = x.shape
    qkv = apply_2d(self.qkv, x).reshape(b, t, 3, self.heads, self.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    y = attention(q, k, v, mask=mask, causal=causal, implementation=self.implementation,
                  matmul_precision=self.matmul_precision)
    return apply_2d(self.out, y.reshape(b, t, d))


class Mlp(nnx.Module):
  def __init__(self, width: int, mlp_dim: int, *, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, act: str = "gelu",
               matmul_precision: str = "default", rngs: nnx.Rngs):
    if act not in ACTIVATIONS:
      raise ValueError(
          f"Unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}.")
    self.act = act
    self.fc1 = dense(width, mlp_dim, dtype, param_dtype, rngs,
                     matmul_precision=matmul_precision)
    self.fc2 = dense(mlp_dim, width, dtype, param_dtype, rngs,
                     matmul_precision=matmul_precision)

  def __call__(self, x: jax.Array) -> jax.Array:
    return apply_2d(lambda h: self.fc2(ACTIVATIONS[self.act](self.fc1(h))), x)


class Block(nnx.Module):
  def __init__(self, width: int, heads: int, mlp_dim: int, *,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               act: str = "gelu", attn_impl: str | None = None,
               matmul_precision: str = "default", rngs: nnx.Rngs):
    self.dtype = dtype
    self.ln1 = layer_norm(width, rngs, param_dtype)
    self.attn = Attention(width, heads, dtype=dtype, param_dtype=param_dtype,
                          implementation=attn_impl, matmul_precision=matmul_precision,
                          rngs=rngs)
    self.ln2 = layer_norm(width, rngs, param_dtype)
    self.mlp = Mlp(width, mlp_dim, dtype=dtype, param_dtype=param_dtype,
                   act=act, matmul_precision=matmul_precision, rngs=rngs)

  def __call__(self, x: jax.Array, *, causal: bool = False,
               mask: jax.Array | None = None) -> jax.Array:
    x = x + self.attn(apply_norm(self.ln1, x, self.dtype), causal=causal,
                      mask=mask)
    return x + self.mlp(apply_norm(self.ln2, x, self.dtype))


# Rematerialisation per block: which activations of a block the backward pass keeps; the
# rest is recomputed. "none": keep everything; "full": keep only the block's input;
# "dots": keep matmul outputs, recompute the elementwise work (norms, GELU, softmax);
# "dots_no_batch": keep only matmuls without batch dimensions (not attention's).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Encoder(nnx.Module):
  """`depth` pre-LN blocks followed by a final LayerNorm.

  Returns per-token features [B, T, width] in `dtype`. `remat` names a policy of
  REMAT_POLICIES applied to every block.
  """

  def __init__(self, width: int, depth: int, heads: int, mlp_dim: int, *,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               act: str = "gelu", attn_impl: str | None = None, remat: str = "none",
               matmul_precision: str = "default", rngs: nnx.Rngs):
    if remat not in REMAT_POLICIES:
      raise ValueError(f"Unknown remat policy {remat!r}; known: {', '.join(REMAT_POLICIES)}.")
    self.remat = remat
    self.dtype = dtype
    # nnx.List makes the index part of the parameter path (blocks.3.attn...).
    self.blocks = nnx.List([
        Block(width, heads, mlp_dim, dtype=dtype, param_dtype=param_dtype,
              act=act, attn_impl=attn_impl, matmul_precision=matmul_precision, rngs=rngs)
        for _ in range(depth)
    ])
    self.ln_final = layer_norm(width, rngs, param_dtype)

  def __call__(self, x: jax.Array, *, causal: bool = False,
               mask: jax.Array | None = None) -> jax.Array:
    x = x.astype(self.dtype)

    def run_block(block, x):
      return block(x, causal=causal, mask=mask)

    if self.remat != "none":
      run_block = nnx.remat(run_block, policy=REMAT_POLICIES[self.remat])
    # Unrolled over depth (not per sample): XLA sees one static graph.
    for block in self.blocks:
      x = run_block(block, x)
    return apply_norm(self.ln_final, x, self.dtype)
