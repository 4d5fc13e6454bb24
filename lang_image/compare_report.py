"""The comparison's tables and pictures (`lang_image.compare`): markdown, CSV and PNG.

Columns appear when some run has the metric: zero-shot top-1 for the eval set's own labels
and for each named label set (scenes: colour ... full, easy to hard, and the held-out
compositions), retrieval R@1 both ways, the linear probe on each probe set; for configs with
an nCLIP term a second table of its heads on the test split (mutual information
H(mean p) - mean H(p) and distinct argmax prototypes, image and text) and its training-log
monitors (the lowest entropy ratio H(mean p) / log K and the last mutual information).
"""

from __future__ import annotations

import csv
import math
import re

from lang_image import compare_claims as claims_lib

# Monitors read from a run's training log (W/train_metrics.jsonl) by the comparison.
COLLAPSE = "nclip_min_entropy_ratio"
MUTUAL_INFORMATION = "nclip_final_mutual_information"
NCLIP_COLUMNS = (
    ("nclip_heads/image/mutual_information", "image I(x; k) (nats)", "{:.2f}"),
    ("nclip_heads/text/mutual_information", "text I(x; k) (nats)", "{:.2f}"),
    ("nclip_heads/image/distinct_argmax", "image distinct argmax", "{:.1f}"),
    ("nclip_heads/text/distinct_argmax", "text distinct argmax", "{:.1f}"),
    (COLLAPSE, "train: min H(mean p)/log K", "{:.2f}"),
    (MUTUAL_INFORMATION, "train: final I(x; k) (nats)", "{:.2f}"),
)
VERDICT_COLOURS = {"holds": "tab:green", "refuted": "tab:red", "inconclusive": "tab:gray",
                   "reference": "tab:blue", "no data": "lightgray"}
_LABEL_SET_KEY = re.compile(r"^zero_shot/([^/]+)/top1$")


def summarise(rows: list[dict]) -> list[dict]:
  """Mean and sample standard deviation over seeds, per config, for every metric."""
  out = []
  for name in dict.fromkeys(r["config"] for r in rows):
    group = [r for r in rows if r["config"] == name]
    summary = {"config": name, "seeds": len(group)}
    keys = dict.fromkeys(k for r in group for k in r if k not in ("config", "seed"))
    for key in keys:
      values = [float(r[key]) for r in group if r.get(key) not in (None, "")]
      if not values:
        continue
      mean = sum(values) / len(values)
      std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
             if len(values) > 1 else 0.0)
      summary[key] = (mean, std)
    out.append(summary)
  return out


def columns(summary: list[dict]) -> list[tuple[str, str]]:
  """(metric key, title) of the accuracy table, for the metrics some config has."""
  keys = {k for s in summary for k in s}
  known = claims_lib.ZERO_SHOT_SETS
  sets = sorted({m.group(1) for m in map(_LABEL_SET_KEY.match, keys) if m},
                key=lambda s: (known.index(s) if s in known else len(known), s))
  probes = sorted({p for s in summary for p in claims_lib.probe_sets(s)})
  out = [("zero_shot/top1", "zero-shot top-1"), ("zero_shot/top1_unseen", "top-1, held-out pairs")]
  out += [(f"zero_shot/{s}/top1", f"zero-shot {s}") for s in sets]
  out += [(f"zero_shot/{s}/top1_unseen", f"zero-shot {s}, held-out") for s in sets]
  out += [("retrieval/i2t_r1", "R@1 image->text"), ("retrieval/t2i_r1", "R@1 text->image"),
          ("linear_probe/top1", "linear probe top-1")]
  out += [(f"linear_probe/{p}/top1", f"linear probe {p}") for p in probes]
  return [c for c in out if c[0] in keys]


def _table(head, lines_of_cells) -> str:
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  lines += ["| " + " | ".join(cells) + " |" for cells in lines_of_cells]
  return "\n".join(lines) + "\n"


def markdown_table(summary: list[dict]) -> str:
  """The accuracy table (%, mean ± std over seeds), then the nCLIP heads' table if any."""
  cols = columns(summary)
  rows = [[f"`{s['config']}`", str(s["seeds"]),
           *[f"{s[key][0]:.1f} ± {s[key][1]:.1f}" if key in s else "" for key, _ in cols]]
          for s in summary]
  text = _table(["config", "seeds", *[title for _, title in cols]], rows)
  nclip = [c for c in NCLIP_COLUMNS if any(c[0] in s for s in summary)]
  with_nclip = [s for s in summary if any(c[0] in s for c in nclip)]
  if with_nclip:
    rows = [[f"`{s['config']}`", str(s["seeds"]),
             *[fmt.format(s[key][0]) if key in s else "" for key, _, fmt in nclip]]
            for s in with_nclip]
    text += ("\nnCLIP heads on the test split (mean over seeds), and the training log's "
             "monitors:\n\n" + _table(["config", "seeds", *[t for _, t, _ in nclip]], rows))
  return text


def write_csv(path: str, rows: list[dict]) -> None:
  keys = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: (f"{v[0]:.4f} ± {v[1]:.4f}" if isinstance(v, tuple) else v)
                       for k, v in r.items()})


def rule_text() -> str:
  """The verdict rule, for the claims' header."""
  m = claims_lib.MARGIN
  return ("Difference A - B per seed (same seed for A and B), in points; its mean and 95 % "
          "confidence interval (Student's t, n - 1 degrees of freedom). Verdicts: 'above' "
          "holds if the CI's lower end > 0 and is refuted if its upper end < 0; 'below' "
          "holds if the upper end < 0 and is refuted if the lower end > 0; 'at or above' "
          f"holds if the lower end > -{m:g} and is refuted if the upper end < -{m:g} (margin "
          f"{m:g} point); otherwise inconclusive (always so with fewer than 2 seeds). "
          "Zero-shot: top-1 on the hardest label set (scenes: full), else the eval set's "
          "own; linear probe: mean top-1 over the probe sets; retrieval: mean of image->text "
          "and text->image R@1.")


def _cell(value: float, fmt: str = "{:+.1f}") -> str:
  return "" if value is None or math.isnan(value) else fmt.format(value)


def claims_markdown(results: list[dict]) -> str:
  head = ["claim", "paper", "A", "B", "metric", "seeds", "mean A - B", "95 % CI", "verdict"]
  rows = []
  for r in results:
    ci = (f"[{_cell(r['low'])}, {_cell(r['high'])}]" if not math.isnan(r["low"]) else "")
    rows.append([r["claim"], f"arXiv:{r['paper']}" if r["paper"] else "sanity",
                 f"`{r['a']}`", f"`{r['b']}`", r["metric"], str(r["n"]), _cell(r["mean"]),
                 ci, f"**{r['verdict']}**"])
  return _table(head, rows)


def _csv_value(value):
  if isinstance(value, list):
    return ";".join(str(_csv_value(v)) for v in value)
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.4f}"
  return value


def write_claims_csv(path: str, results: list[dict]) -> None:
  """One row per claim; `seeds` and `differences` (A - B per seed) joined by ';'."""
  keys = ("claim", "paper", "a", "b", "metric", "direction", "n", "mean", "low", "high",
          "verdict", "seeds", "differences")
  names = {"a": "A", "b": "B", "n": "n_seeds", "mean": "mean_diff", "low": "ci_low",
           "high": "ci_high"}
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([names.get(k, k) for k in keys])
    writer.writerows([_csv_value(r[k]) for k in keys] for r in results)


def _pyplot():
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  return plt


def plot(path: str, summary: list[dict]) -> None:
  """The accuracy table as bars, one panel per column (five to a row), with the seeds'
  spread; accuracies on 0-100 %, retrieval R@1 on its own scale."""
  plt = _pyplot()
  cols = columns(summary)
  ncols = min(5, len(cols))
  nrows = -(-len(cols) // ncols)
  fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 3.3 * nrows), squeeze=False)
  names = [s["config"] for s in summary]
  for ax, (key, title) in zip(axes.flat, cols):
    means = [s[key][0] if key in s else 0.0 for s in summary]
    stds = [s[key][1] if key in s else 0.0 for s in summary]
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, None if key.startswith("retrieval/") else 100)
    ax.set_ylabel("%", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
  for ax in list(axes.flat)[len(cols):]:
    ax.set_visible(False)
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)


def plot_claims(path: str, results: list[dict]) -> None:
  """Each claim's mean difference A - B with its 95 % CI, coloured by verdict."""
  plt = _pyplot()
  n = len(results)
  fig, ax = plt.subplots(figsize=(8.5, 0.38 * n + 1.4))
  for i, r in enumerate(results):
    y = n - 1 - i
    colour = VERDICT_COLOURS[r["verdict"]]
    if not math.isnan(r["low"]):
      ax.errorbar(r["mean"], y, xerr=[[r["mean"] - r["low"]], [r["high"] - r["mean"]]],
                  fmt="o", color=colour, capsize=3)
    elif not math.isnan(r["mean"]):
      ax.plot(r["mean"], y, "o", color=colour)
  ax.axvline(0.0, color="black", linewidth=0.8)
  ax.axvline(-claims_lib.MARGIN, color="black", linewidth=0.6, linestyle=":")
  ax.set_yticks(range(n), [f"{r['claim']} [{r['metric']}]" for r in reversed(results)],
                fontsize=7)
  ax.set_xlabel("A - B (points), mean and 95 % CI over paired seeds; dotted: -margin")
  for verdict, colour in VERDICT_COLOURS.items():
    if any(r["verdict"] == verdict for r in results):
      ax.plot([], [], "o", color=colour, label=verdict)
  ax.legend(fontsize=7, loc="best")
  ax.grid(axis="x", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches="tight")
  plt.close(fig)
