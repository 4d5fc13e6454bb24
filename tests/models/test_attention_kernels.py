"""config.model.attention: the XLA paths against a float64 reference, and which kernel each
config and device gets (cuDNN itself needs an NVIDIA GPU: benchmarks/device_check.sh)."""

import math
import types

import jax
import numpy as np
import pytest
from flax import nnx

from configs import clip as clip_config
from lang_image import config as config_lib
from lang_image.models import attention_kernels, layers, two_tower


def attention64(q, k, v, keep):
  """softmax(q k^T / sqrt(H)) v per batch row and head in float64, with masked logits
  excluded from the softmax: written from the definition, one (b, n) at a time."""
  b, t, heads, h = q.shape
  out = np.zeros((b, t, heads, h))
  for i in range(b):
    for n in range(heads):
      logits = q[i, :, n] @ k[i, :, n].T / math.sqrt(h)
      logits = np.where(keep[i], logits, -np.inf)
      weights = np.exp(logits - logits.max(-1, keepdims=True))
      out[i, :, n] = (weights / weights.sum(-1, keepdims=True)) @ v[i, :, n]
  return out


@pytest.mark.parametrize("implementation", [None, "xla"])
@pytest.mark.parametrize("masking", ["none", "causal", "padding"])
def test_xla_attention_equals_the_float64_reference(implementation, masking):
  rng = np.random.default_rng(0)
  b, t, heads, h = 3, 6, 2, 8
  q, k, v = (rng.normal(size=(b, t, heads, h)) for _ in range(3))
  keep = np.ones((b, t, t), bool)
  mask = None
  if masking == "causal":
    keep = np.broadcast_to(np.tril(np.ones((t, t), bool)), (b, t, t))
  elif masking == "padding":
    lengths = np.array([6, 3, 1])
    keep = np.broadcast_to((np.arange(t)[None] < lengths[:, None])[:, None, :], (b, t, t))
    mask = keep[:, None, :1, :]  # [B, 1, 1, S]: the keys that exist.
  got = layers.attention(*(jax.numpy.asarray(x, jax.numpy.float32) for x in (q, k, v)),
                         mask=mask, causal=masking == "causal", implementation=implementation)
  np.testing.assert_allclose(np.asarray(got, np.float64), attention64(q, k, v, keep),
                             rtol=1e-5, atol=1e-6)


def small_model_config(**model):
  config = clip_config.get_config("batch=8")
  config.model.update(image_size=32, **model)
  return config


def test_the_attention_field_builds_the_same_towers_as_before():
  """attention='xla' names jax's XLA implementation, which implementation=None also runs."""
  outputs = []
  tokens = np.tile(np.arange(1, 25, dtype=np.int32), (2, 1))
  images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  for attention in ("xla", "auto", None):
    model_cfg = small_model_config().model
    if attention is None:
      del model_cfg["attention"]
    towers = two_tower.build_two_tower(model_cfg, 1000, rngs=nnx.Rngs(0))
    outputs.append(towers(images, tokens))
  for other in outputs[1:]:
    for key in ("image_emb", "text_emb"):
      np.testing.assert_array_equal(np.asarray(other[key]), np.asarray(outputs[0][key]))


def test_cudnn_on_a_cpu_fails_at_validation_in_one_sentence():
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.validate(small_model_config(attention="cudnn"), None)
  assert str(e.value) == (
      "config.model.attention='cudnn' needs an NVIDIA GPU, but this run's devices are CPU; "
      "use attention='xla' (or 'auto', which picks cudnn only where it runs).")


def test_an_unknown_kernel_fails_at_validation():
  with pytest.raises(config_lib.ConfigError, match=r"^unknown config.model.attention 'flash'; "
                     r"use one of \['xla', 'cudnn', 'auto'\]\.$"):
    config_lib.validate(small_model_config(attention="flash"), None)


def gpu(capability):
  return types.SimpleNamespace(platform="gpu", compute_capability=capability)


@pytest.mark.parametrize("model, device, expected", [
    (dict(dtype="bfloat16"), gpu("9.0"), "cudnn"),
    (dict(matmul_precision="bf16_f32acc"), gpu("8.0"), "cudnn"),
    (dict(dtype="float32"), gpu("9.0"), "xla"),          # cuDNN takes bf16 inputs only
    (dict(dtype="bfloat16"), gpu("7.5"), "xla"),         # pre-Ampere
    (dict(dtype="bfloat16", image="w60-d2-h6-mlp128/8", text="w60-d2-h6-mlp128"),
     gpu("9.0"), "xla"),                                 # head dimension 10, not 8k
    (dict(dtype="bfloat16"), types.SimpleNamespace(platform="tpu"), "xla"),
    (dict(dtype="bfloat16"), types.SimpleNamespace(platform="cpu"), "xla"),
])
def test_auto_picks_cudnn_only_where_it_runs(model, device, expected):
  model_cfg = small_model_config(attention="auto", **model).model
  assert attention_kernels.implementation(model_cfg, [device]) == expected


def test_cudnn_on_a_gpu_with_float32_compute_names_the_fix():
  problem = attention_kernels.cudnn_problem(small_model_config().model, "gpu", gpu("9.0"))
  assert problem.startswith("needs bfloat16 attention inputs, and this model computes in "
                            "float32; set config.model.dtype='bfloat16'")
