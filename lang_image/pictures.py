"""Pictures of a run, to look at instead of reading logs (all at `plots.DPI`, 150 dpi).

- `training_curves` (lang_image/plots.py): the logged training means of every loss term, the
  eval metrics of every evaluation and nCLIP's collapse monitor, against the step.
- `similarity`: cosine similarities s_ij = <x_i, t_j> of the first eval images and texts: the
  first caption of each image, or (without captions) the class embedding of its label, each
  row and column labelled. A model that matches them shows a bright diagonal.
- `zero_shot_predictions`: eval images, failures and successes, each with its three best
  classes and their cosine similarities; the title is green when the first one is right, and
  says so when the image's class is a held-out composition (subset 'unseen').
- `embedding_pca`: image and class (or caption) embeddings projected together onto their two
  principal components: the top two right singular vectors of the centred, stacked
  embeddings. Images are small markers, classes large ones of the same colour and shape,
  named in the legend; class names that begin with a colour ("red star") get that colour.

Every `draw_*` function draws into given matplotlib Axes (notebooks place several runs side
by side); `figures` builds them for an `evaluators.Evaluator` after a call, `write` saves
figures as PNG and TensorBoard images, and `write_run` does both for a run's workdir.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from lang_image import plots, storage
from lang_image.evaluators import eval_sets
from lang_image.plots import (EVAL_CURVES, draw_eval_curves, draw_loss_curves,  # noqa: F401
                              new_figure, training_curves)

SIMILARITY_SIZE = 16
GRID = (3, 6)
PCA_POINTS = 480
DPI = plots.DPI
MARKERS = "os^*XPhDv<>p"


def _short(text: str, n: int = 40) -> str:
  return text if len(text) <= n else text[:n - 1] + "…"


def draw_similarity(ax, image_emb: np.ndarray, text_emb: np.ndarray, title: str,
                    row_labels=None, col_labels=None) -> None:
  """Heat map of image_emb @ text_emb.T (rows: images, columns: texts), with the rows and
  columns named where labels are given."""
  sims = np.asarray(image_emb) @ np.asarray(text_emb).T
  im = ax.imshow(sims, cmap="viridis", interpolation="nearest")
  ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine similarity")
  if row_labels is not None:
    ax.set_yticks(range(len(row_labels)), [_short(t) for t in row_labels], fontsize=6)
  if col_labels is not None:
    ax.set_xticks(range(len(col_labels)), [_short(t) for t in col_labels], fontsize=6,
                  rotation=60, ha="right", rotation_mode="anchor")
  ax.set_xlabel("text j")
  ax.set_ylabel("image i (its class)" if row_labels is not None else "image i")
  ax.set_title(title, fontsize=9)


def draw_predictions(axes, images, scores, class_names, labels, top: int = 3,
                     held_out=None) -> None:
  """One image per axes with its `top` best classes by score; `held_out` marks images whose
  class is a composition held out of training."""
  held_out = np.zeros(len(labels), bool) if held_out is None else np.asarray(held_out)
  for ax, image, row, label, unseen in zip(np.ravel(axes), images, scores, labels, held_out):
    best = np.argsort(-row, kind="stable")[:top]
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    right = best[0] == label
    lines = [f"{row[c]:.2f} {class_names[c]}" for c in best]
    title = f"{'right' if right else 'WRONG'}: {class_names[label]}"
    if unseen:
      title += "\n(held-out pair)"
      for side in ax.spines.values():
        side.set_edgecolor("tab:purple")
        side.set_linewidth(2.5)
    ax.set_title(title, fontsize=7, color="tab:green" if right else "tab:red")
    ax.set_xlabel("\n".join(lines), fontsize=6)


def pca_2d(*parts: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
  """Projects the stacked rows of `parts` onto their top two principal components.

  Returns the projected parts and the fraction of variance each component explains.
  """
  stacked = np.concatenate([np.asarray(p, np.float64) for p in parts])
  centred = stacked - stacked.mean(axis=0)
  _, singular, vt = np.linalg.svd(centred, full_matrices=False)
  projected = centred @ vt[:2].T
  explained = singular[:2] ** 2 / max(float(np.sum(singular ** 2)), 1e-30)
  splits = np.cumsum([len(p) for p in parts])[:-1]
  return np.split(projected, splits), explained


def class_styles(names, n: int):
  """(colours [n, 4], markers [n]) per label: the colour a name begins with ("red star") and a
  marker per the rest of the name when every name has one, else tab20 (hues beyond 20) and
  markers cycling in blocks."""
  from matplotlib import colormaps, colors  # noqa: PLC0415
  words = [str(name).split(" ", 1) for name in names] if names is not None else []
  if len(words) == n and all(len(w) == 2 and colors.is_color_like(w[0]) for w in words):
    shapes = sorted({w[1] for w in words})
    return (np.array([colors.to_rgba(w[0]) for w in words]),
            [MARKERS[shapes.index(w[1]) % len(MARKERS)] for w in words])
  cmap = colormaps["tab20"] if n <= 20 else colormaps["hsv"]
  rgba = cmap(np.arange(n) if n <= 20 else np.arange(n) / max(n, 1))
  return rgba, [MARKERS[(i // 20) % len(MARKERS)] for i in range(n)]


def draw_pca(ax, image_emb, image_labels, text_emb, text_labels, text_names=None) -> None:
  """Images (small markers) and texts (large ones, black edges) in the plane of their top two
  principal components, in their label's colour and marker; with `text_names` (one per text
  label, in label order), a legend names each label's style."""
  (images, texts), explained = pca_2d(image_emb, text_emb)
  image_labels, text_labels = np.asarray(image_labels), np.asarray(text_labels)
  n = int(max(np.max(image_labels, initial=0), np.max(text_labels, initial=0))) + 1
  rgba, markers = class_styles(text_names, n)
  for label in range(n):
    mine = image_labels == label
    if mine.any():
      ax.scatter(images[mine, 0], images[mine, 1], s=9, alpha=0.45, color=rgba[label],
                 marker=markers[label], lw=0)
    theirs = text_labels == label
    if theirs.any():
      ax.scatter(texts[theirs, 0], texts[theirs, 1], s=110, marker=markers[label],
                 color=rgba[label], edgecolors="black", linewidths=0.7,
                 label=str(text_names[label]) if text_names is not None else None)
  if text_names is not None:
    ax.legend(fontsize=6, ncols=max(1, -(-n // 24)), loc="upper left", bbox_to_anchor=(1.01, 1),
              borderaxespad=0, markerscale=0.7, title="class (its text embedding)",
              title_fontsize=7)
  ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}% of variance)")
  ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}% of variance)")
  ax.set_title("PCA of image (small) and text (large, black edge) embeddings", fontsize=9)


def paired_texts(evaluator, n: int):
  """(texts [n, D], title, their labels) paired with the first n eval images, or None."""
  es, emb = evaluator.eval_set, evaluator.last
  if emb.captions is not None:
    _, first = np.unique(es.caption_image, return_index=True)  # every image has a caption
    texts = [es.captions[i] for i in first[:n]]
    return (emb.captions[first[:n]], "cosine similarity: image i, first caption of image j",
            texts)
  if emb.classes is not None:
    return (emb.classes[es.test.labels[:n]],
            "cosine similarity: image i, class prompt of image j's label",
            [es.classes[c] for c in es.test.labels[:n]])
  return None


def _spread(pool: np.ndarray, k: int) -> list[int]:
  """Up to k elements of `pool` spread evenly over it (so every part of the set shows)."""
  if k <= 0 or not len(pool):
    return []
  if len(pool) <= k:
    return list(pool)
  return list(pool[np.linspace(0, len(pool) - 1, k).round().astype(int)])


def grid_picks(scores: np.ndarray, labels: np.ndarray, held_out: np.ndarray, count: int):
  """Indices of `count` images for the prediction grid: failures and successes in equal
  parts where there are enough, each part held-out compositions first up to half of it, each
  kind spread over the whole set."""
  right = np.argmax(scores, axis=1) == labels
  picks = []
  for wanted in (False, True):
    part = count - count // 2 if not wanted else count // 2
    pool = np.flatnonzero(right == wanted)
    unseen = _spread(pool[held_out[pool]], part // 2)
    picks += unseen + _spread(pool[~held_out[pool]], part - len(unseen))
  if len(picks) < count:  # Too few of one kind: fill up with the rest, spread likewise.
    rest = np.setdiff1d(np.arange(len(labels)), picks)
    picks += _spread(rest, count - len(picks))
  return np.sort(np.asarray(picks, int))


def figures(evaluator) -> dict[str, Figure]:
  """Every picture of the eval set that the evaluator's latest call allows."""
  out = {}
  es, emb = evaluator.eval_set, evaluator.last
  if emb is None:
    return out
  n = min(SIMILARITY_SIZE, len(emb.images))
  side = paired_texts(evaluator, n)
  if side is not None:
    texts, title, text_labels = side
    rows = ([es.classes[c] for c in es.test.labels[:n]]
            if es.classes is not None and es.test.labels is not None
            else [f"image {i}" for i in range(n)])
    fig = new_figure(7.4, 6.6)
    draw_similarity(fig.add_subplot(1, 1, 1), emb.images[:n], texts, title,
                    [f"{i}: {r}" for i, r in enumerate(rows)],
                    [f"{j}: {t}" for j, t in enumerate(text_labels)])
    fig.tight_layout()
    out["similarity"] = fig
  if emb.classes is not None:
    rows, cols = GRID
    count = min(PCA_POINTS, len(emb.images))
    scores = emb.images[:count] @ emb.classes.T
    held_out = np.asarray(es.subsets.get("unseen", np.zeros(len(emb.images), bool)))[:count]
    picks = grid_picks(scores, es.test.labels[:count], held_out, rows * cols)
    images = eval_sets.first_images(es.test.images, int(picks.max()) + 1)[picks]
    fig = new_figure(1.9 * cols, 2.8 * rows)
    axes = fig.subplots(rows, cols)
    draw_predictions(axes, images, scores[picks], es.classes, es.test.labels[picks],
                     held_out=held_out[picks])
    for ax in np.ravel(axes)[len(picks):]:
      ax.axis("off")
    fig.suptitle("zero-shot: top-3 classes by cosine similarity" + (
        " (purple frame: a composition held out of training)" if held_out.any() else ""),
        fontsize=8)
    fig.tight_layout()
    out["zero_shot_predictions"] = fig
    classes = np.arange(len(es.classes))
    fig = new_figure(9.0, 6.0)
    draw_pca(fig.add_subplot(1, 1, 1), emb.images[:count], es.test.labels[:count],
             emb.classes, classes, es.classes if len(classes) <= 72 else None)
    fig.tight_layout()
    out["embedding_pca"] = fig
  elif emb.captions is not None:
    count = min(PCA_POINTS, len(emb.images))
    captions = np.flatnonzero(es.caption_image < count)
    fig = new_figure(6.4, 5.6)
    draw_pca(fig.add_subplot(1, 1, 1), emb.images[:count], np.arange(count),
             emb.captions[captions], es.caption_image[captions])
    fig.tight_layout()
    out["embedding_pca"] = fig
  return out


def to_rgb(fig: Figure) -> np.ndarray:
  """uint8 [H, W, 3] pixels of a figure."""
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def to_png(fig: Figure) -> bytes:
  """PNG bytes of a figure (e.g. for IPython.display.Image)."""
  import io  # noqa: PLC0415
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png")
  return buffer.getvalue()


def write(directory: str, step: int, figs: dict[str, Figure], writer=None,
          tag_prefix: str = "pictures") -> dict[str, str]:
  """Saves each figure as directory/<name>.png and, with a clu writer, as a TensorBoard
  image `<tag_prefix>/<name>` at `step`. Returns the PNG paths by name."""
  from PIL import Image  # noqa: PLC0415
  paths, images = {}, {}
  for name, fig in figs.items():
    rgb = to_rgb(fig)
    paths[name] = storage.join(directory, f"{name}.png")
    # 256 colours: plots lose nothing visible and the files stay small.
    png = io.BytesIO()
    Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE).save(
        png, format="PNG", optimize=True)
    storage.write_bytes(paths[name], png.getvalue())
    images[f"{tag_prefix}/{name}"] = rgb[None]
  if writer is not None and images:
    writer.write_images(step, images)
  return paths


def folder_name(eval_set_name: str) -> str:
  """A single folder name for an eval set's pictures, also when its name is a path or a
  source spec ('wds:/data/val/{0..3}.tar' -> 'wds_data_val_0..3_.tar')."""
  import re  # noqa: PLC0415
  return re.sub(r"[^A-Za-z0-9._-]+", "_", eval_set_name).strip("_.") or "eval"


def write_run(workdir: str, step: int, evaluator, writer=None, train_records=()) -> dict:
  """The training curves (from W/train_metrics.jsonl records and W/eval/) as
  W/pictures/training_curves.png, and the evaluator's pictures as W/pictures/<dataset>/*.png;
  the same images to TensorBoard with a clu writer. Returns the PNG paths by name."""
  from lang_image import evaluators  # noqa: PLC0415
  directory = storage.join(workdir, "pictures")
  eval_records = evaluators.read_json_history(workdir)
  paths = {}
  if train_records or eval_records:
    curves = {"training_curves": training_curves(list(train_records), eval_records)}
    paths.update(write(directory, step, curves, writer))
  name = folder_name(evaluator.eval_set.name)
  paths.update(write(storage.join(directory, name), step, figures(evaluator), writer,
                     f"pictures/{name}"))
  return paths
