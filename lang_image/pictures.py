"""Pictures of a run, to look at instead of reading logs.

- `training_curves`: the logged training means of every loss term, and the eval metrics of
  every evaluation, against the step.
- `similarity`: cosine similarities s_ij = <x_i, t_j> of the first eval images and texts: the
  first caption of each image, or (without captions) the class embedding of its label. A
  model that matches them shows a bright diagonal.
- `zero_shot_predictions`: eval images, each with its three best classes and their cosine
  similarities; the title is green when the first one is right.
- `embedding_pca`: image and class (or caption) embeddings projected together onto their two
  principal components: the top two right singular vectors of the centred, stacked
  embeddings. Images are dots coloured by label, classes stars in the same colour.

Every `draw_*` function draws into given matplotlib Axes (notebooks place several runs side
by side); `figures` builds them for an `evaluators.Evaluator` after a call, `write` saves
figures as PNG and TensorBoard images, and `write_run` does both for a run's workdir.
"""

from __future__ import annotations


import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lang_image.evaluators import eval_sets

# Eval metrics drawn by `draw_eval_curves`, when logged.
EVAL_CURVES = ("zero_shot/top1", "zero_shot/top1_unseen", "linear_probe/top1", "knn/top1",
               "retrieval/i2t_r1", "retrieval/t2i_r1",
               # The scenes benchmark's label sets (evaluators/scenes_sets.py).
               "zero_shot/count/top1", "zero_shot/colour_shape/top1",
               "zero_shot/colour_shape/top1_unseen", "zero_shot/full/top1",
               "linear_probe/texture/top1")
SIMILARITY_SIZE = 24
GRID = (3, 6)
PCA_POINTS = 480
DPI = 80


def new_figure(width: float, height: float) -> Figure:
  """A figure that renders without pyplot (no global state, any thread)."""
  fig = Figure(figsize=(width, height), dpi=DPI)
  FigureCanvasAgg(fig)
  return fig


def draw_loss_curves(ax, train_records: list[dict]) -> None:
  """Every logged loss ('loss' and '<term>/loss') against the step."""
  keys = sorted({k for r in train_records for k in r if k == "loss" or k.endswith("/loss")})
  for key in keys:
    points = [(r["step"], r[key]) for r in train_records if key in r]
    ax.plot(*zip(*points), label=key, lw=1.5 if key == "loss" else 1.0)
  ax.set_xlabel("step")
  ax.set_title("training loss (log interval means)", fontsize=9)
  if keys:
    ax.legend(fontsize=7)
  ax.grid(alpha=0.3)


def draw_eval_curves(ax, eval_records: list[dict]) -> None:
  """The main eval metrics (percent) of every evaluation against the step."""
  for key in EVAL_CURVES:
    points = [(r["step"], r["metrics"][key]) for r in eval_records if key in r["metrics"]]
    if points:
      ax.plot(*zip(*points), marker="o", ms=3, label=key)
  ax.set_xlabel("step")
  ax.set_ylabel("%")
  ax.set_ylim(0, 100)
  ax.set_title("evaluation", fontsize=9)
  if eval_records:
    ax.legend(fontsize=7)
  ax.grid(alpha=0.3)


def training_curves(train_records: list[dict], eval_records: list[dict]) -> Figure:
  fig = new_figure(9, 3.2)
  draw_loss_curves(fig.add_subplot(1, 2, 1), train_records)
  draw_eval_curves(fig.add_subplot(1, 2, 2), eval_records)
  fig.tight_layout()
  return fig


def draw_similarity(ax, image_emb: np.ndarray, text_emb: np.ndarray, title: str) -> None:
  """Heat map of image_emb @ text_emb.T (rows: images, columns: texts)."""
  sims = np.asarray(image_emb) @ np.asarray(text_emb).T
  im = ax.imshow(sims, cmap="viridis", interpolation="nearest")
  ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  ax.set_xlabel("text j")
  ax.set_ylabel("image i")
  ax.set_title(title, fontsize=9)


def draw_predictions(axes, images, scores, class_names, labels, top: int = 3) -> None:
  """One image per axes with its `top` best classes by score."""
  for ax, image, row, label in zip(np.ravel(axes), images, scores, labels):
    best = np.argsort(-row, kind="stable")[:top]
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    lines = [f"{row[c]:.2f} {class_names[c]}" for c in best]
    ax.set_title(class_names[label], fontsize=7,
                 color="tab:green" if best[0] == label else "tab:red")
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


def draw_pca(ax, image_emb, image_labels, text_emb, text_labels, text_names=None) -> None:
  """Images (dots) and texts (stars) in the plane of their top two principal components,
  coloured by label; with `text_names`, each star is named."""
  (images, texts), explained = pca_2d(image_emb, text_emb)
  n_colours = int(max(np.max(image_labels, initial=0), np.max(text_labels, initial=0))) + 1
  cmap = _colours(n_colours)
  ax.scatter(images[:, 0], images[:, 1], s=6, alpha=0.5, c=cmap(image_labels), lw=0)
  ax.scatter(texts[:, 0], texts[:, 1], s=70, marker="*", c=cmap(text_labels),
             edgecolors="black", linewidths=0.5)
  if text_names is not None:
    for (x, y), name in zip(texts, text_names):
      ax.annotate(name, (x, y), fontsize=5, alpha=0.8)
  ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f}%)")
  ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f}%)")
  ax.set_title("PCA of image (dots) and text (stars) embeddings", fontsize=9)


def _colours(n: int):
  """label -> RGBA: tab20's distinct colours for up to 20 labels, hues around the circle
  beyond."""
  from matplotlib import colormaps  # noqa: PLC0415
  if n <= 20:
    return lambda labels: colormaps["tab20"](np.asarray(labels))
  return lambda labels: colormaps["hsv"](np.asarray(labels) / n)


def paired_texts(evaluator, n: int):
  """(texts [n, D], title) paired with the first n eval images, or None."""
  es, emb = evaluator.eval_set, evaluator.last
  if emb.captions is not None:
    _, first = np.unique(es.caption_image, return_index=True)  # every image has a caption
    return emb.captions[first[:n]], "cosine similarity: image i, first caption of image j"
  if emb.classes is not None:
    return (emb.classes[es.test.labels[:n]],
            "cosine similarity: image i, class prompt of image j's label")
  return None


def figures(evaluator) -> dict[str, Figure]:
  """Every picture of the eval set that the evaluator's latest call allows."""
  out = {}
  es, emb = evaluator.eval_set, evaluator.last
  if emb is None:
    return out
  n = min(SIMILARITY_SIZE, len(emb.images))
  side = paired_texts(evaluator, n)
  if side is not None:
    fig = new_figure(5.2, 4.4)
    draw_similarity(fig.add_subplot(1, 1, 1), emb.images[:n], *side)
    fig.tight_layout()
    out["similarity"] = fig
  if emb.classes is not None:
    rows, cols = GRID
    picks = np.linspace(0, len(emb.images) - 1, rows * cols).astype(int)
    images = eval_sets.first_images(es.test.images, int(picks.max()) + 1)[picks]
    fig = new_figure(1.5 * cols, 2.1 * rows)
    axes = fig.subplots(rows, cols)
    draw_predictions(axes, images, emb.images[picks] @ emb.classes.T, es.classes,
                     es.test.labels[picks])
    fig.tight_layout()
    out["zero_shot_predictions"] = fig
    count = min(PCA_POINTS, len(emb.images))
    fig = new_figure(5.6, 4.8)
    classes = np.arange(len(es.classes))
    draw_pca(fig.add_subplot(1, 1, 1), emb.images[:count], es.test.labels[:count],
             emb.classes, classes, es.classes if len(classes) <= 60 else None)
    fig.tight_layout()
    out["embedding_pca"] = fig
  elif emb.captions is not None:
    count = min(PCA_POINTS, len(emb.images))
    captions = np.flatnonzero(es.caption_image < count)
    fig = new_figure(5.6, 4.8)
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
  import io  # noqa: PLC0415
  from lang_image import storage  # noqa: PLC0415
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


def write_run(workdir: str, step: int, evaluator, writer=None, train_records=()) -> dict:
  """The training curves (from W/train_metrics.jsonl records and W/eval/) as
  W/pictures/training_curves.png, and the evaluator's pictures as W/pictures/<dataset>/*.png;
  the same images to TensorBoard with a clu writer. Returns the PNG paths by name."""
  from lang_image import evaluators  # noqa: PLC0415
  from lang_image import storage  # noqa: PLC0415
  directory = storage.join(workdir, "pictures")
  eval_records = evaluators.read_json_history(workdir)
  paths = {}
  if train_records or eval_records:
    curves = {"training_curves": training_curves(list(train_records), eval_records)}
    paths.update(write(directory, step, curves, writer))
  name = evaluator.eval_set.name
  paths.update(write(storage.join(directory, storage.safe_name(name)), step, figures(evaluator), writer,
                     f"pictures/{name}"))
  return paths
