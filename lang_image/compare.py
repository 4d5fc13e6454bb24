"""Trains several objectives with the same budget and seeds, and tabulates what they learned.

    python -m lang_image.compare --out=/tmp/compare                # all six configs, 3 seeds
    python -m lang_image.compare --out=/tmp/c --configs=clip,xclip --seeds=0 --steps=100

Each run is `python main.py --config=configs/NAME.py:steps=S,batch=B,seed=K` with its own
workdir under OUT/runs/; a run whose final evaluation exists is not repeated, and an
interrupted one resumes from its checkpoint, so the command can be re-run after a stop.
Writes:
  OUT/runs.csv          one row per run: every final eval metric, plus nCLIP's lowest logged
                        entropy ratio H(mean p) / log K (collapse below 0.5) and its final
                        mutual information H(mean p) - mean H(p) (0: every sample predicts
                        the same distribution)
  OUT/table.md, .csv    mean and standard deviation over seeds per config
  OUT/comparison.png    the table's main metrics as bars with the seeds' spread
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time

from absl import app, flags

CONFIGS = ("clip", "siglip", "nclip", "xclip", "rankclip", "cliplite")
# (metric key, column title) of the table, in order.
COLUMNS = (
    ("zero_shot/top1", "zero-shot top-1"),
    ("zero_shot/top1_unseen", "top-1, held-out pairs"),
    ("retrieval/i2t_r1", "R@1 image->text"),
    ("retrieval/t2i_r1", "R@1 text->image"),
    ("linear_probe/top1", "linear probe top-1"),
)
COLLAPSE = "nclip_min_entropy_ratio"
MUTUAL_INFORMATION = "nclip_final_mutual_information"

_OUT = flags.DEFINE_string("out", None, "Directory for the runs, tables and plot.")
_CONFIGS = flags.DEFINE_list("configs", list(CONFIGS), "Config names under configs/.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; one run per config and seed.")
_STEPS = flags.DEFINE_integer("steps", 200, "Training steps of every run (the shared budget).")
_BATCH = flags.DEFINE_integer("batch", 128, "Global batch of every run.")
_EXTRA = flags.DEFINE_list("override", [], "Extra --config.x=y overrides for every run.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_one(name: str, seed: int, steps: int, batch: int, workdir: str, extra=()) -> dict:
  """Trains (or resumes) one run; returns its final eval metrics and collapse monitor."""
  final = os.path.join(workdir, "eval", f"step_{steps:08d}.json")
  if not os.path.exists(final):
    command = [sys.executable, os.path.join(ROOT, "main.py"),
               f"--config={os.path.join(ROOT, 'configs', name + '.py')}:"
               f"steps={steps},batch={batch},seed={seed}",
               f"--workdir={workdir}", *[f"--config.{o}" for o in extra]]
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "compare.log"), "a") as log:
      subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
  with open(final) as f:
    metrics = dict(json.load(f)["metrics"])
  from lang_image import train  # noqa: PLC0415  (keeps `--help` light)
  logged = [r for r in train.read_train_metrics(workdir) if "nclip/mean_entropy_ratio" in r]
  if logged:
    metrics[COLLAPSE] = min(r["nclip/mean_entropy_ratio"] for r in logged)
    metrics[MUTUAL_INFORMATION] = logged[-1]["nclip/mutual_information"]
  return metrics


def summarise(rows: list[dict]) -> list[dict]:
  """Mean and sample standard deviation over seeds, per config, for every metric."""
  out = []
  for name in dict.fromkeys(r["config"] for r in rows):
    group = [r for r in rows if r["config"] == name]
    summary = {"config": name, "seeds": len(group)}
    keys = [k for k in group[0] if k not in ("config", "seed")]
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


def markdown_table(summary: list[dict]) -> str:
  columns = [c for c in COLUMNS if any(c[0] in s for s in summary)]
  has_collapse = any(COLLAPSE in s for s in summary)
  head = ["config", "seeds", *[title for _, title in columns]]
  if has_collapse:
    head += ["nCLIP min H(mean p)/log K", "nCLIP final I(x; k) (nats)"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for s in summary:
    cells = [f"`{s['config']}`", str(s["seeds"])]
    for key, _ in columns:
      cells.append(f"{s[key][0]:.1f} ± {s[key][1]:.1f}" if key in s else "")
    if has_collapse:
      cells += [f"{s[key][0]:.2f}" if key in s else "" for key in (COLLAPSE, MUTUAL_INFORMATION)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_csv(path: str, rows: list[dict]) -> None:
  keys = list(dict.fromkeys(k for r in rows for k in r))
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    for r in rows:
      writer.writerow({k: (f"{v[0]:.4f} ± {v[1]:.4f}" if isinstance(v, tuple) else v)
                       for k, v in r.items()})


def plot(path: str, summary: list[dict]) -> None:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  columns = [c for c in COLUMNS if any(c[0] in s for s in summary)]
  fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4), squeeze=False)
  names = [s["config"] for s in summary]
  for ax, (key, title) in zip(axes[0], columns):
    means = [s[key][0] if key in s else 0.0 for s in summary]
    stds = [s[key][1] if key in s else 0.0 for s in summary]
    ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
  axes[0][0].set_ylabel("%")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv):
  del argv
  if not _OUT.value:
    raise app.UsageError("--out is required: the directory for the runs and tables.")
  unknown = [c for c in _CONFIGS.value
             if not os.path.exists(os.path.join(ROOT, "configs", c + ".py"))]
  if unknown:
    raise app.UsageError(f"no config file configs/{unknown[0]}.py; known: {', '.join(CONFIGS)}.")
  out = _OUT.value
  os.makedirs(out, exist_ok=True)
  rows = []
  for name in _CONFIGS.value:
    for seed in map(int, _SEEDS.value):
      t0 = time.time()
      workdir = os.path.join(out, "runs", f"{name}_seed{seed}")
      metrics = run_one(name, seed, _STEPS.value, _BATCH.value, workdir, _EXTRA.value)
      rows.append({"config": name, "seed": seed, **metrics})
      print(f"{name} seed {seed}: zero-shot top-1 {metrics.get('zero_shot/top1', float('nan')):.1f}"
            f" ({time.time() - t0:.0f} s)", flush=True)
  write_csv(os.path.join(out, "runs.csv"), rows)
  summary = summarise(rows)
  write_csv(os.path.join(out, "table.csv"), summary)
  table = markdown_table(summary)
  header = (f"{len(_SEEDS.value)} seeds, {_STEPS.value} steps, batch {_BATCH.value}, "
            f"{time.strftime('%Y-%m-%d')}; mean ± std over seeds (%).\n\n")
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(header + table)
  plot(os.path.join(out, "comparison.png"), summary)
  print(header + table)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(main)
