"""benchmarks/hlo.py against small compiled programs."""

import jax
import jax.numpy as jnp
import pytest

from benchmarks import hlo


def compiled_text(fn, *args):
  return jax.jit(fn).lower(*args).compile().as_text()


def bf16_matmul_then_tanh(a, b):
  return jnp.tanh(jnp.dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                          preferred_element_type=jnp.float32))


def test_dot_census_reads_operand_and_result_types():
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  assert hlo.dot_census(compiled_text(lambda a, b: a @ b, a, b)) == {"f32 x f32 -> f32": 1}
  dots = hlo.dots(compiled_text(lambda a, b: (a @ b) @ b.T, a, b))
  assert sorted(d.result_shape for d in dots) == ["64,16", "64,32"], dots


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="reads XLA:CPU's fusions")
def test_fusions_with_dots_names_the_fusion_that_runs_the_dot():
  text = compiled_text(bf16_matmul_then_tanh, jnp.ones((64, 32)), jnp.ones((32, 16)))
  names = hlo.fusions_with_dots(text)
  assert len(names) == 1, names
  (name,) = names
  # The named instruction is a fusion in the module, and no elementwise-only fusion counts.
  assert f"%{name} = " in text and " fusion(" in text.split(f"%{name} = ", 1)[1].split("\n")[0]
  assert hlo.fusions_with_dots(compiled_text(jnp.tanh, jnp.ones((64, 32)))) == set()
