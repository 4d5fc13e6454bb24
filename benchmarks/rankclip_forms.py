"""How far RankCLIP's two ListMLE forms ("released": the released list_MLE with its 1e-10;
"exact": the Plackett-Luce NLL by cumlogsumexp) lie apart, in loss and gradients.

    python benchmarks/rankclip_forms.py [--scales=14.2857,54] [--batches=12,128]
        [--dims=8,64] [--seeds=5] [--json]

For each logit scale s, batch B, embedding width D, kind of embeddings and seed, the whole
ranking term of variant="code" (at full ramp weight) is computed in float64 in both forms,
with its gradients with respect to the image embeddings, the text embeddings and the
log-scale. Reported, as the maximum over seeds:

  loss      |L_released - L_exact| / |L_exact| of the ranking term
  total     the same for the whole RankCLIP loss, L_CLIP + term
  grad      max over the three arguments of max|g_released - g_exact| / max|g_exact|
  tails     the share of in-modal suffix sums below 1e-10 (where the eps dominates)

Embeddings: "random" draws image and text unit vectors independently; "paired" draws the
text as the image plus Gaussian noise of the same size (then normalised), so that matching
pairs are closer than the rest, as in a trained model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this lang_image

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lang_image.objectives import clip, rankclip  # noqa: E402


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scales", default=f"{1 / 0.07},54")
  parser.add_argument("--batches", default="12,128")
  parser.add_argument("--dims", default="8,64")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  return parser.parse_args()


def embeddings(kind: str, batch: int, dim: int, seed: int):
  rng = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
  u = unit(rng.normal(size=(batch, dim)))
  noise = unit(rng.normal(size=(batch, dim)))
  return u, unit(noise if kind == "random" else u + noise)


def small_tail_share(u, v, scale: float) -> float:
  """Share of the in-modal lists' suffix sums sum_{l >= k} exp(a_l - max) below 1e-10."""
  small = total = 0
  for a, r in ((scale * u @ u.T, scale * v @ v.T), (scale * v @ v.T, scale * u @ u.T)):
    for a_row, r_row in zip(a, r):
      ranked = a_row[np.argsort(-r_row, kind="stable")]
      tails = np.cumsum(np.exp(ranked - ranked.max())[::-1])[::-1]
      small += int(np.sum(tails < rankclip.RELEASED_EPS))
      total += tails.size
  return small / total


def compare(u, v, scale: float) -> dict:
  def term(a, b, t, form):
    return rankclip.ranking_loss(a, b, t, "code", step=1, total_steps=2, list_mle=form)[0]

  args = (jnp.asarray(u), jnp.asarray(v), jnp.asarray(math.log(scale)))
  fn = jax.value_and_grad(term, argnums=(0, 1, 2))
  (released, g_released), (exact, g_exact) = (fn(*args, form) for form in ("released", "exact"))
  grad = max(float(jnp.max(jnp.abs(r - e)) / jnp.max(jnp.abs(e)))
             for r, e in zip(g_released, g_exact))
  total = float(clip.clip_loss(*args)[0]) + float(exact)
  return {"loss": float(abs(released - exact) / abs(exact)), "grad": grad,
          "total": float(abs(released - exact)) / total}


def main():
  args = parse_args()
  rows = []
  with jax.enable_x64(True):
    for scale in (float(x) for x in args.scales.split(",")):
      for batch in (int(x) for x in args.batches.split(",")):
        for dim in (int(x) for x in args.dims.split(",")):
          for kind in ("random", "paired"):
            runs = []
            for seed in range(args.seeds):
              u, v = embeddings(kind, batch, dim, seed)
              runs.append({**compare(u, v, scale), "tails": small_tail_share(u, v, scale)})
            rows.append({"scale": scale, "batch": batch, "dim": dim, "embeddings": kind,
                         **{k: max(r[k] for r in runs)
                            for k in ("loss", "total", "grad", "tails")}})
  summary = {}
  for row in rows:
    worst = summary.setdefault(f"{row['scale']:.4g}", {"loss": 0.0, "total": 0.0, "grad": 0.0})
    for key in worst:
      worst[key] = max(worst[key], row[key])
  if args.json:
    print(json.dumps({"rows": rows, "max_by_scale": summary}, indent=1))
    return
  print(f"{'scale':>8} {'B':>4} {'D':>4} {'embeddings':>10} {'term rel':>10} {'total rel':>10}"
        f" {'grad rel':>10} {'tails<eps':>9}")
  for r in rows:
    print(f"{r['scale']:8.4g} {r['batch']:4d} {r['dim']:4d} {r['embeddings']:>10} "
          f"{r['loss']:10.3g} {r['total']:10.3g} {r['grad']:10.3g} {r['tails']:9.2f}")
  for scale, worst in summary.items():
    print(f"max at scale {scale}: ranking term {worst['loss']:.3g}, whole loss "
          f"{worst['total']:.3g}, gradients of the term {worst['grad']:.3g}")


if __name__ == "__main__":
  main()
