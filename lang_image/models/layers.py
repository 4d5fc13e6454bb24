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

`matmul_precision` (MATMUL_PRECISIONS) refines how the matmuls run, whatever `dtype`:
  "default"      in `dtype`, as jnp / nnx.Linear compute them.
  "bf16_f32acc"  every projection (qkv, out, MLP, patch embedding, MAP head, the towers'
                 output projections) and attention's two products take bfloat16 inputs
                 and accumulate and return float32, in the forward and the backward pass
                 (a custom VJP: the gradient matmuls also take bfloat16 inputs). Outputs
                 are cast to `dtype`; with dtype float32 the residual stream, LayerNorm,
                 GELU, softmax and everything else elementwise stay float32. On a CPU with
                 AVX512-BF16 these matmuls run at about twice the float32 rate, where
                 bfloat16 matmuls with bfloat16 outputs do not.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

Dtype = Any

# PyTorch's default; using it keeps OpenAI/HF checkpoints numerically faithful.
LN_EPS = 1e-5


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


def layer_norm(width: int, rngs: nnx.Rngs, param_dtype: Dtype = jnp.float32):
  return nnx.LayerNorm(width, epsilon=LN_EPS, dtype=jnp.float32,
                       param_dtype=param_dtype, rngs=rngs)


def set_norm_epsilon(module: nnx.Module, epsilon: float) -> None:
  """Sets the epsilon of every LayerNorm inside `module` (for weights trained with another
  epsilon than LN_EPS); a static attribute, so set it before splitting or jitting."""
  for _, m in nnx.iter_modules(module):
    if isinstance(m, nnx.LayerNorm):
      m.epsilon = float(epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm_f32(x: jax.Array, scale: jax.Array, bias: jax.Array,
                   epsilon: float) -> jax.Array:
  """LayerNorm over the last axis of a float32 x, with a hand-written backward pass.

  The backward pass keeps x and the per-row mean and 1/std and recomputes the normalised
  x; under autodiff of the plain formula XLA:CPU kept per-row statistics broadcast to x's
  full shape from the forward to the backward pass (benchmarks/RESULTS.md). Checked
  against float64 central differences in tests/models/test_layers.py.
  """
  return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_fwd(x, scale, bias, epsilon):
  mean = jnp.mean(x, axis=-1, keepdims=True)
  centred = x - mean
  rstd = lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + epsilon)
  return centred * rstd * scale + bias, (x, mean, rstd, scale)


def _layer_norm_bwd(epsilon, residuals, g):
  # y = xhat * scale + bias with xhat = (x - mean) * rstd:
  # dx = rstd * (gs - mean(gs) - xhat * mean(gs * xhat)), gs = g * scale.
  del epsilon
  # The barrier keeps XLA from sharing the forward pass's broadcast of 1/std with this
  # pass, which would keep it alive as a full-size array in between.
  x, mean, rstd, scale = lax.optimization_barrier(residuals)
  xhat = (x - mean) * rstd
  gs = g * scale
  dx = rstd * (gs - jnp.mean(gs, axis=-1, keepdims=True)
               - xhat * jnp.mean(gs * xhat, axis=-1, keepdims=True))
  rows = tuple(range(x.ndim - 1))
  return dx, jnp.sum(g * xhat, axis=rows), jnp.sum(g, axis=rows)


layer_norm_f32.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def apply_norm(ln: nnx.LayerNorm, x: jax.Array, dtype: Dtype) -> jax.Array:
  """`ln` (its parameters and epsilon) applied through layer_norm_f32. Statistics are
  float32 regardless of the compute dtype: a bf16 variance of wide activations is too
  lossy."""
  return layer_norm_f32(x.astype(jnp.float32), ln.scale[...].astype(jnp.float32),
                        ln.bias[...].astype(jnp.float32), float(ln.epsilon)).astype(dtype)


# Values of `config.model.matmul_precision` (see the module docstring).
MATMUL_PRECISIONS = ("default", "bf16_f32acc")


def check_matmul_precision(matmul_precision: str) -> str:
  if matmul_precision not in MATMUL_PRECISIONS:
    raise ValueError(f"Unknown matmul precision {matmul_precision!r}; known: "
                     f"{', '.join(MATMUL_PRECISIONS)}.")
  return matmul_precision


def _loop_transpose(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
  # One trip; two if the first element is NaN, which computes the same value. The initial
  # value is only a placeholder of the right shape (a reshape, not a transpose).
  trips = 1 + jnp.isnan(x.reshape(-1)[0]).astype(jnp.int32)
  placeholder = x.reshape(tuple(x.shape[p] for p in perm))
  _, out = lax.while_loop(lambda c: c[0] < trips,
                          lambda c: (c[0] + 1, jnp.transpose(x, perm)),
                          (jnp.int32(0), placeholder))
  return out


def materialised_transpose(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
  """jnp.transpose(x, perm), written out in that order in memory on XLA:CPU.

  XLA:CPU hands a bf16 x bf16 -> f32 dot to YNNPACK only when both operands are laid
  out row-major with the left one contracted along its minor (last) axis and batch axes
  leading. XLA folds a transpose that feeds a dot into the dot's dimension numbers; when
  that leaves a dot YNNPACK does not take (the weight gradient x^T g; attention's
  products on token-major q, k, v), the dot runs as a float32 fallback at half the rate.
  A loop whose trip count (one) is known only at run time is opaque to that folding.
  Elsewhere a plain transpose.
  """
  perm = tuple(perm)
  return lax.platform_dependent(x, cpu=lambda a: _loop_transpose(a, perm),
                                default=lambda a: jnp.transpose(a, perm))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def relayout(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
  """materialised_transpose, differentiable (its gradient is materialised too)."""
  return materialised_transpose(x, perm)


def _relayout_fwd(x, perm):
  return materialised_transpose(x, perm), None


def _relayout_bwd(perm, _, g):
  inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
  return (materialised_transpose(g, inverse),)


relayout.defvjp(_relayout_fwd, _relayout_bwd)


def _transposed_operand(x: jax.Array) -> jax.Array:
  perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
  return materialised_transpose(x, perm)


def _batched_dot(a: jax.Array, b: jax.Array, rhs_transposed: bool) -> jax.Array:
  """a [..., M, K] times b [..., K, N] (or b [..., N, K] when rhs_transposed), leading
  axes batched, bf16 inputs, f32 accumulation and result."""
  batch = tuple(range(a.ndim - 2))
  contract_b = b.ndim - 1 if rhs_transposed else b.ndim - 2
  return lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                         (((a.ndim - 1,), (contract_b,)), (batch, batch)),
                         preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def bf16_matmul(a: jax.Array, b: jax.Array, rhs_transposed: bool = False) -> jax.Array:
  """a @ b (a @ b^T when rhs_transposed) over the last two axes, leading axes batched:
  bfloat16 inputs, float32 accumulation and float32 result, and the two gradient
  matmuls likewise (each gradient is returned in its input's dtype)."""
  return _batched_dot(a, b, rhs_transposed)


def _bf16_matmul_fwd(a, b, rhs_transposed):
  a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
  # Zero-size markers carry the input dtypes to the backward pass.
  markers = (jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))
  return _batched_dot(a16, b16, rhs_transposed), (a16, b16, markers)


def _bf16_matmul_bwd(rhs_transposed, residuals, g):
  a16, b16, (a_marker, b_marker) = residuals
  g16 = g.astype(jnp.bfloat16)
  if rhs_transposed:                    # y = a b^T: da = g b, db = g^T a
    da = _batched_dot(g16, b16, rhs_transposed=False)
    db = _batched_dot(_transposed_operand(g16), a16, rhs_transposed=False)
  else:                                 # y = a b: da = g b^T, db = a^T g
    da = _batched_dot(g16, b16, rhs_transposed=True)
    db = _batched_dot(_transposed_operand(a16), g16, rhs_transposed=False)
  return da.astype(a_marker.dtype), db.astype(b_marker.dtype)


bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def bf16_dot_general(lhs, rhs, dimension_numbers, precision=None, **_):
  """nnx.Linear's `dot_general` for "bf16_f32acc": lhs [..., K] times kernel [K, N]; the
  result in lhs's dtype."""
  del precision
  (contract_lhs, contract_rhs), (batch_lhs, batch_rhs) = dimension_numbers
  if (tuple(contract_lhs) != (lhs.ndim - 1,) or tuple(contract_rhs) != (0,) or batch_lhs
      or batch_rhs or rhs.ndim != 2):
    raise ValueError(f"bf16_dot_general supports only x[..., K] @ kernel[K, N], got "
                     f"{dimension_numbers} for shapes {lhs.shape} and {rhs.shape}.")
  y = bf16_matmul(lhs.reshape(-1, lhs.shape[-1]), rhs)
  return y.reshape(*lhs.shape[:-1], rhs.shape[1]).astype(lhs.dtype)


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
