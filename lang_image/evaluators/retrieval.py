"""Image<->text retrieval with one caption per image (caption i belongs to image i).

Recall@k is the percentage of queries whose match is among the top k candidates; the rank
counts candidates scoring strictly higher than the match, so a caption identical to the
match (same embedding) does not push it down.
"""

from __future__ import annotations

import numpy as np


def match_rank(similarity: np.ndarray) -> np.ndarray:
  """Rank of candidate i for query i in a [N, N] similarity matrix (0 = best)."""
  true = np.diagonal(similarity)
  return (similarity > true[:, None]).sum(axis=1)


def retrieval_recall(image_emb, text_emb, ks=(1, 5, 10)) -> dict:
  similarity = np.asarray(image_emb) @ np.asarray(text_emb).T
  ranks = {"i2t": match_rank(similarity), "t2i": match_rank(similarity.T)}
  return {f"{direction}_r{k}": 100.0 * float(np.mean(rank < k))
          for direction, rank in ranks.items() for k in ks}
