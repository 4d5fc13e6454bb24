"""Image<->text retrieval, with one or several captions per image.

Captions are given with `caption_image`, the index of the image each caption belongs to
(default: caption i belongs to image i). Scores are cosine similarities s_ij = <x_i, t_j> of
unit embeddings.

- image->text (`i2t`): each image queries all captions; it hits at k when ANY of its own
  captions is among the k best (the usual protocol for COCO/Flickr with five captions).
- text->image (`t2i`): each caption queries all images; its one image must be in the top k.

Recall@k is the percentage of queries that hit at k. The rank of a query is the 1-based
position of its best placed true item; `*_mean_rank` and `*_median_rank` are the mean and
median of it over queries. Ties are broken at random in expectation (`ranks`): a query's hit
is its probability under a random order of the tied items and its rank the expected rank, so
a caption identical to the match (same embedding) shares the hit with it, and embeddings
collapsed to one point score chance. The median rank is the median of these expected ranks.
"""

from __future__ import annotations

import numpy as np

from lang_image.evaluators.ranks import expected_hits, expected_hits_any, expected_rank

# Queries scored at once: bounds the memory of the [queries, candidates] score block.
QUERY_CHUNK = 1024


def _check(image_emb, text_emb, caption_image):
  image_emb, text_emb = np.asarray(image_emb), np.asarray(text_emb)
  if caption_image is None:
    if len(image_emb) != len(text_emb):
      raise ValueError(f"{len(image_emb)} images but {len(text_emb)} captions and no "
                       f"caption_image; pass caption_image, the image index of each caption.")
    caption_image = np.arange(len(text_emb))
  caption_image = np.asarray(caption_image)
  if caption_image.shape != (len(text_emb),) or np.any(caption_image < 0) or np.any(
      caption_image >= len(image_emb)):
    raise ValueError(f"caption_image must hold one image index in [0, {len(image_emb)}) per "
                     f"caption ({len(text_emb)}); fix the caption to image mapping.")
  if np.bincount(caption_image, minlength=len(image_emb)).min() == 0:
    raise ValueError("some images have no caption; give every image at least one caption or "
                     "leave it out.")
  return image_emb, text_emb, caption_image


def retrieval_metrics(image_emb, text_emb, caption_image=None, ks=(1, 5, 10)) -> dict:
  """Recall@k in percent and mean / median rank, both directions (module docstring)."""
  image_emb, text_emb, caption_image = _check(image_emb, text_emb, caption_image)
  i2t_hits, i2t_rank = {k: [] for k in ks}, []
  for start in range(0, len(image_emb), QUERY_CHUNK):
    rows = np.arange(start, min(start + QUERY_CHUNK, len(image_emb)))
    scores = image_emb[rows] @ text_emb.T
    positive = caption_image[None, :] == rows[:, None]
    for k, hits in expected_hits_any(scores, positive, ks).items():
      i2t_hits[k].append(hits)
    i2t_rank.append(expected_rank(scores, positive))
  t2i_hits, t2i_rank = {k: [] for k in ks}, []
  for start in range(0, len(text_emb), QUERY_CHUNK):
    rows = slice(start, start + QUERY_CHUNK)
    scores = text_emb[rows] @ image_emb.T
    for k in ks:
      t2i_hits[k].append(expected_hits(scores, caption_image[rows], k))
    t2i_rank.append(expected_rank(scores, np.eye(len(image_emb), dtype=bool)[caption_image[rows]]))
  metrics = {}
  for direction, hits, ranks in (("i2t", i2t_hits, i2t_rank), ("t2i", t2i_hits, t2i_rank)):
    for k in ks:
      metrics[f"{direction}_r{k}"] = 100.0 * float(np.mean(np.concatenate(hits[k])))
    ranks = np.concatenate(ranks)
    metrics[f"{direction}_mean_rank"] = float(np.mean(ranks))
    metrics[f"{direction}_median_rank"] = float(np.median(ranks))
  return metrics
