"""Prototype usage: the collapse measures of the heads' distributions over the whole test split.

For a term whose heads give each example a distribution p over K outputs (nCLIP's student
p = softmax(h(f) / tau_s) over its prototypes, in evaluation mode; the objectives'
`head_distributions`), on every test image (image head) and every test caption (text head):

    mean_entropy        H(mean_x p)                      log K when usage is uniform
    sample_entropy      mean_x H(p)                      falls as predictions sharpen
    mutual_information  H(mean_x p) - mean_x H(p)        I(example; prototype), in nats:
                                                         0 when every example predicts the
                                                         same distribution, at most log K
    distinct_argmax     how many prototypes are the argmax of at least one example
    distinct_argmax_fraction_of_classes
                        distinct_argmax / the classes of the eval set's hardest labelling
                        (the one with the most classes, e.g. scenes' `full`), if it has labels

Metric names: `<term>_heads/{image,text}/<measure>` (e.g. `nclip_heads/image/
mutual_information`), in nats and counts, not percent. The heads run on global arrays chunk
by chunk, like the embedders; each chunk is reduced on the devices to the sum of p, the
per-prototype argmax counts and the sum of H(p) over its real rows, and the host adds the
chunks in float64. Ties for the argmax go to the lowest index. Float32 rounding could put a
collapsed head's mutual information a hair below 0: it is reported as at least 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import xlogy

from lang_image.evaluators import global_chunks

TASK = "prototype_usage"
SUFFIX = "_heads"
MODALITIES = ("image", "text")


def is_metric(key: str) -> bool:
  """Whether an evaluation metric is one of this module's."""
  return key.split("/", 1)[0].endswith(SUFFIX)


@jax.jit
def chunk_summary(p: jax.Array, rows) -> dict:
  """One chunk [B, K] of distributions -> sums over its first `rows` rows: `p_sum` [K],
  `argmax_counts` [K] and `entropy_sum` (of H(p))."""
  p = p.astype(jnp.promote_types(p.dtype, jnp.float32))
  real = (jnp.arange(p.shape[0]) < rows).astype(p.dtype)
  entropy = -jnp.sum(xlogy(p, p), axis=-1)
  top = jax.nn.one_hot(jnp.argmax(p, axis=-1), p.shape[-1], dtype=p.dtype)
  return {"p_sum": real @ p, "argmax_counts": real @ top, "entropy_sum": real @ entropy}


def summarise(distributions, data, batch_size: int, sharding) -> dict:
  """The chunk summaries of `distributions` (a function of global chunks of `data`), added
  up in float64 on the host, with `examples`, the number of rows of `data`."""
  total, examples = None, 0
  for chunk, rows in global_chunks.global_chunks(data, batch_size, sharding):
    summary = {k: global_chunks.to_host(v).astype(np.float64)
               for k, v in chunk_summary(distributions(chunk), rows).items()}
    total = summary if total is None else {k: total[k] + v for k, v in summary.items()}
    examples += rows
  return {**total, "examples": examples}


def entropy(p: np.ndarray) -> float:
  p = np.asarray(p, np.float64)
  return float(-np.sum(p[p > 0] * np.log(p[p > 0])))


def measures(p_sum, argmax_counts, entropy_sum, examples: int,
             num_classes: int | None = None) -> dict:
  """The collapse measures (module docstring) from a split's summed chunk summaries."""
  mean_entropy = entropy(np.asarray(p_sum, np.float64) / examples)
  sample_entropy = float(entropy_sum) / examples
  distinct = int(np.count_nonzero(np.asarray(argmax_counts) > 0))
  out = {"mean_entropy": mean_entropy, "sample_entropy": sample_entropy,
         "mutual_information": max(mean_entropy - sample_entropy, 0.0),
         "distinct_argmax": distinct}
  if num_classes:
    out["distinct_argmax_fraction_of_classes"] = distinct / num_classes
  return out


def head_usage(head_distributions: dict, images, caption_tokens, batch_size: int, sharding,
               num_classes: int | None = None) -> dict:
  """The measures of every head: `head_distributions` {term name: {"image": fn, "text": fn}}
  (`Trainer.bind_embedders`) on the test images and on the caption tokens (None: no text
  measures)."""
  metrics = {}
  for name, fns in head_distributions.items():
    for modality, data in zip(MODALITIES, (images, caption_tokens)):
      if data is None or not len(data):
        continue
      summary = summarise(fns[modality], data, batch_size, sharding)
      values = measures(**summary, num_classes=num_classes)
      metrics.update({f"{name}{SUFFIX}/{modality}/{k}": v for k, v in values.items()})
  return metrics
