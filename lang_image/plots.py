"""Curves against the training step: losses, evaluation metrics, nCLIP's collapse monitors.

Each `draw_*` draws into given matplotlib Axes; `training_curves` puts them side by side.
They read the records a run logs (W/train_metrics.jsonl, W/eval/step_N.json) and are right for
any run length: a series of one point is drawn as a marker, and the step axis spans the
whole run (from 0 to the last step logged), not a window around a single point.
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 150
# Eval metrics drawn by `draw_eval_curves`, when logged.
EVAL_CURVES = ("zero_shot/top1", "zero_shot/top1_unseen", "linear_probe/top1", "knn/top1",
               "retrieval/i2t_r1", "retrieval/t2i_r1",
               # The scenes benchmark's label sets (evaluators/scenes_sets.py).
               "zero_shot/count/top1", "zero_shot/colour_shape/top1",
               "zero_shot/colour_shape/top1_unseen", "zero_shot/full/top1",
               "linear_probe/texture/top1")
# nCLIP's collapse monitor, a fraction in [0, 1]: the entropy of the batch-mean prototype
# distribution over its maximum log K; it falls towards 0 when the heads collapse onto a few
# prototypes. (prototypes_used is bounded by batch / K, so it is not drawn on this scale.)
MONITORS = ("mean_entropy_ratio",)


def new_figure(width: float, height: float) -> Figure:
  """A figure that renders without pyplot (no global state, any thread)."""
  fig = Figure(figsize=(width, height), dpi=DPI)
  FigureCanvasAgg(fig)
  return fig


def _plot(ax, points, **kwargs):
  """A line through the points, with markers where there are few (one point is a marker)."""
  xs, ys = zip(*points)
  marker = "o" if len(points) <= 25 else None
  ax.plot(xs, ys, marker=marker, ms=4 if len(points) == 1 else 2.5, **kwargs)


def _steps_axis(ax, last_step: int) -> None:
  ax.set_xlabel("training step")
  ax.set_xlim(0, max(1, last_step) * 1.03)
  ax.grid(alpha=0.3)


def draw_loss_curves(ax, train_records: list[dict], last_step: int | None = None) -> None:
  """Every logged loss ('loss' and '<term>/loss') against the step."""
  keys = sorted({k for r in train_records for k in r if k == "loss" or k.endswith("/loss")})
  for key in keys:
    points = [(r["step"], r[key]) for r in train_records if key in r]
    _plot(ax, points, label="total" if key == "loss" else key, lw=1.8 if key == "loss" else 1.0)
  _steps_axis(ax, last_step or max((r["step"] for r in train_records), default=1))
  ax.set_ylabel("loss (log-interval mean)")
  negative = any(r.get(k, 0) < 0 for r in train_records for k in keys)
  title = "training loss"
  if negative:
    title += "\n(nCLIP's entropy bonus makes it negative; lower is better)"
  ax.set_title(title, fontsize=9)
  if keys:
    ax.legend(fontsize=7)
  else:
    ax.text(0.5, 0.5, "no training metrics logged", ha="center", transform=ax.transAxes)


def draw_eval_curves(ax, eval_records: list[dict], last_step: int | None = None) -> None:
  """The main eval metrics (percent) of every evaluation against the step. When the last
  evaluation ran on more test examples than the periodic ones before it (the final one uses
  the whole split), it is drawn apart, as open diamonds: retrieval recall, for one, falls
  with the number of candidates, so one line through both would mislead."""
  final = None
  if (len(eval_records) > 1 and eval_records[-1].get("examples") is not None
      and eval_records[-1].get("examples") != eval_records[-2].get("examples")):
    final, eval_records = eval_records[-1], eval_records[:-1]
  drawn = 0
  for key in EVAL_CURVES:
    points = [(r["step"], r["metrics"][key]) for r in eval_records if key in r["metrics"]]
    if points:
      _plot(ax, points, label=key)
      drawn += 1
      if final is not None and key in final["metrics"]:
        ax.scatter([final["step"]], [final["metrics"][key]], marker="D", s=30,
                   facecolors="none", edgecolors=ax.get_lines()[-1].get_color(), zorder=3)
  title = "evaluation"
  if final is not None:
    ax.scatter([], [], marker="D", facecolors="none", edgecolors="black",
               label=f"final: whole split ({final['examples']} examples)")
    title += f" (lines: periodic, first {eval_records[-1].get('examples')} test examples)"
    eval_records = eval_records + [final]
  _steps_axis(ax, last_step or max((r["step"] for r in eval_records), default=1))
  ax.set_ylabel("accuracy / recall (%)")
  ax.set_ylim(0, 100)
  ax.set_title(title, fontsize=9)
  if drawn:
    ax.legend(fontsize=7)
  else:
    ax.text(0.5, 0.5, "no evaluation logged", ha="center", transform=ax.transAxes)


def monitor_keys(train_records: list[dict]) -> list[str]:
  return sorted({k for r in train_records for k in r if k.rpartition("/")[2] in MONITORS})


def draw_monitors(ax, train_records: list[dict], last_step: int | None = None) -> None:
  """nCLIP's collapse monitor (`MONITORS`; near 0: collapse onto a few prototypes)."""
  for key in monitor_keys(train_records):
    _plot(ax, [(r["step"], r[key]) for r in train_records if key in r], label=key)
  _steps_axis(ax, last_step or max((r["step"] for r in train_records), default=1))
  ax.set_ylim(0, 1.05)
  ax.set_ylabel("fraction")
  ax.set_title("nCLIP collapse monitor (towards 0 = collapse)", fontsize=9)
  ax.legend(fontsize=7)


def training_curves(train_records: list[dict], eval_records: list[dict]) -> Figure:
  last = max([r["step"] for r in train_records] + [r["step"] for r in eval_records] + [1])
  panels = 3 if monitor_keys(train_records) else 2
  fig = new_figure(4.6 * panels, 3.8)
  draw_loss_curves(fig.add_subplot(1, panels, 1), train_records, last)
  draw_eval_curves(fig.add_subplot(1, panels, 2), eval_records, last)
  if panels == 3:
    draw_monitors(fig.add_subplot(1, panels, 3), train_records, last)
  fig.tight_layout()
  return fig
