"""Curves right for any run length, and pictures whose legends match what they draw."""

import numpy as np
from matplotlib import colors

from lang_image import pictures, plots


def test_a_single_logged_point_is_drawn_as_a_marker_on_the_whole_step_axis():
  fig = plots.training_curves([{"step": 20, "loss": 3.0, "clip/loss": 3.0}],
                              [{"step": 20, "metrics": {"zero_shot/top1": 12.0}}])
  loss_ax, eval_ax = fig.axes
  for ax in (loss_ax, eval_ax):
    (line, *_) = ax.get_lines()
    assert line.get_marker() == "o" and line.get_markersize() >= 4
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] >= 20
    assert ax.get_xlabel() == "training step" and ax.get_ylabel()
  assert fig.dpi >= 150
  # The point is visible: the rendered panel has pixels of the line's colour.
  rgb = pictures.to_rgb(fig).reshape(-1, 3).astype(int)
  colour = (np.array(colors.to_rgb(loss_ax.get_lines()[0].get_color())) * 255).astype(int)
  assert (np.abs(rgb - colour).sum(axis=1) < 30).sum() > 20


def test_collapse_monitors_get_a_panel_and_negative_totals_are_explained():
  records = [{"step": s, "loss": -1.0 * s, "nclip/loss": -2.0 * s,
              "nclip/mean_entropy_ratio": 0.9, "nclip/prototypes_used": 0.5}
             for s in (10, 20, 30, 40)]
  fig = plots.training_curves(records, [])
  assert len(fig.axes) == 3
  assert "negative" in fig.axes[0].get_title()
  assert [l.get_label() for l in fig.axes[2].get_lines()] == ["nclip/mean_entropy_ratio"]
  assert plots.training_curves([{"step": 5, "loss": 1.0}], []).axes[0].get_title() == (
      "training loss")


def test_pca_legend_matches_the_drawn_colours_and_markers():
  rng = np.random.default_rng(0)
  names = ["red star", "green star", "yellow circle", "blue heart"]
  fig = pictures.new_figure(6, 4)
  ax = fig.add_subplot(1, 1, 1)
  labels = np.arange(40) % 4
  pictures.draw_pca(ax, rng.normal(size=(40, 8)), labels, rng.normal(size=(4, 8)),
                    np.arange(4), names)
  legend = ax.get_legend()
  texts = [t.get_text() for t in legend.get_texts()]
  assert texts == names
  for name, handle in zip(texts, legend.legend_handles):
    expected = colors.to_rgba(name.split()[0])
    np.testing.assert_allclose(handle.get_facecolor()[0], expected)
  rgba, markers = pictures.class_styles(names, 4)
  assert markers[0] == markers[1] != markers[2]  # same shape word, same marker
  # Names without a colour word get distinct palette colours.
  rgba, _ = pictures.class_styles(["zero", "one", "two"], 3)
  assert len({tuple(c) for c in rgba}) == 3


def test_prediction_grid_holds_failures_successes_and_held_out_pairs():
  labels = np.arange(60) % 6
  scores = np.eye(6)[labels]
  scores[::3] = np.roll(scores[::3], 1, axis=1)  # every third one wrong
  held_out = labels == 5
  picks = pictures.grid_picks(scores, labels, held_out, 18)
  right = scores[picks].argmax(1) == labels[picks]
  assert len(picks) == 18 and len(set(picks)) == 18
  assert right.sum() == 9 and (~right).sum() == 9
  assert held_out[picks].sum() >= 4


def test_pictures_of_any_eval_set_go_to_one_folder_under_the_workdir():
  assert pictures.folder_name("lang_image_shapes") == "lang_image_shapes"
  assert pictures.folder_name("/data/digits") == "data_digits"
  assert pictures.folder_name("wds:/data/val/{0..3}.tar") == "wds_data_val_0..3_.tar"
  assert "/" not in pictures.folder_name("csv:../x/test.csv")


def test_a_final_evaluation_on_more_examples_is_drawn_apart_from_the_periodic_line():
  records = [{"step": s, "examples": 500, "metrics": {"retrieval/i2t_r1": 10.0 + s / 100}}
             for s in (100, 200, 300)]
  records.append({"step": 400, "examples": 2400, "metrics": {"retrieval/i2t_r1": 4.0}})
  fig = plots.new_figure(5, 4)
  ax = fig.add_subplot(1, 1, 1)
  plots.draw_eval_curves(ax, records)
  (line,) = ax.get_lines()
  assert list(line.get_xdata()) == [100, 200, 300]  # the line is the periodic evaluations
  offsets = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
  np.testing.assert_allclose(offsets, [[400, 4.0]])
  assert "final: whole split (2400 examples)" in [t.get_text() for t in ax.get_legend().get_texts()]
  assert "first 500 test examples" in ax.get_title()
