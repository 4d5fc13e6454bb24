"""How the towers' matmuls run: `config.model.matmul_precision`.

MATMUL_PRECISIONS refines how the matmuls run, whatever `dtype`:
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

import jax
import jax.numpy as jnp
from jax import lax


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
