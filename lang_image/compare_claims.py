"""The papers' claims as data, and how a comparison's runs test them (`lang_image.compare`).

A claim says that config A stands to config B in one metric (`METRICS`), in a direction:

  above        A > B           holds if the CI's lower end > 0, refuted if its upper end < 0
  at_or_above  A >= B - MARGIN holds if the CI's lower end > -MARGIN, refuted if its upper
                               end < -MARGIN (A is then more than MARGIN points below B)
  below        A < B           holds if the CI's upper end < 0, refuted if its lower end > 0
  None         reference only  no verdict ('reference')

and otherwise 'inconclusive'. The CI is the 95 % confidence interval of the mean paired
difference A - B over the seeds both configs ran (the same seed: same data order and
initialisation draw), with Student's t on n - 1 degrees of freedom: mean +- t * sd / sqrt(n).
With fewer than two paired seeds there is no interval and the verdict is 'inconclusive'
(no paired seed at all: 'no data').

Metrics, in percentage points: 'zero_shot' is the top-1 of the hardest label set
(`zero_shot/full/top1` on scenes) when present, else `zero_shot/top1`; 'linear_probe' the
mean top-1 over the probe sets (`linear_probe/<set>/top1`), else `linear_probe/top1`;
'retrieval' the mean of image->text and text->image R@1.
"""

from __future__ import annotations

import dataclasses
import math
import re

# Points below B that 'at or above' still tolerates.
MARGIN = 1.0
CONFIDENCE = 0.95
UNTRAINED = "untrained"
# scenes' zero-shot label sets from easy to hard (evaluators/scenes_sets.ZERO_SHOT; kept here
# so that the comparison's tables need no data code).
ZERO_SHOT_SETS = ("colour", "shape", "count", "colour_shape", "full")
HARDEST_ZERO_SHOT = ZERO_SHOT_SETS[-1]
DIRECTIONS = ("above", "at_or_above", "below", None)
VERDICTS = ("holds", "refuted", "inconclusive", "reference", "no data")

_PROBE_KEY = re.compile(r"^linear_probe/([^/]+)/top1$")


@dataclasses.dataclass(frozen=True)
class Claim:
  text: str
  paper: str  # arXiv id; '' for the comparison's own sanity checks.
  a: str
  b: str
  metric: str  # A key of METRICS.
  direction: str | None


def zero_shot(row: dict) -> float | None:
  return _number(row.get(f"zero_shot/{HARDEST_ZERO_SHOT}/top1", row.get("zero_shot/top1")))


def probe_sets(row: dict) -> list[str]:
  """The named probe sets of a row's linear probe (e.g. texture, size), in key order."""
  return [m.group(1) for m in map(_PROBE_KEY.match, row) if m]


def linear_probe(row: dict) -> float | None:
  values = [_number(row.get(f"linear_probe/{name}/top1")) for name in probe_sets(row)]
  values = [v for v in values if v is not None]
  if values:
    return sum(values) / len(values)
  return _number(row.get("linear_probe/top1"))


def retrieval(row: dict) -> float | None:
  values = [_number(row.get(f"retrieval/{k}_r1")) for k in ("i2t", "t2i")]
  return None if None in values else (values[0] + values[1]) / 2


METRICS = {"zero_shot": zero_shot, "linear_probe": linear_probe, "retrieval": retrieval}
METRIC_TITLES = {"zero_shot": "zero-shot top-1 (hardest label set)",
                 "linear_probe": "linear probe top-1 (mean of probe sets)",
                 "retrieval": "retrieval R@1 (mean of i2t, t2i)"}

NCLIP, XCLIP, RANKCLIP, CLIPLITE = "2210.09304", "2210.09304", "2404.09387", "2112.07133"
PAPER_CLAIMS = (
    Claim("nCLIP below CLIP in zero-shot", NCLIP, "nclip", "clip", "zero_shot", "below"),
    Claim("nCLIP at or above CLIP in linear probe", NCLIP, "nclip", "clip", "linear_probe",
          "at_or_above"),
    Claim("xCLIP at or above CLIP in zero-shot", XCLIP, "xclip", "clip", "zero_shot",
          "at_or_above"),
    Claim("xCLIP at or above CLIP in linear probe", XCLIP, "xclip", "clip", "linear_probe",
          "at_or_above"),
    Claim("RankCLIP above CLIP in zero-shot", RANKCLIP, "rankclip", "clip", "zero_shot", "above"),
    Claim("RankCLIP above CLIP in retrieval", RANKCLIP, "rankclip", "clip", "retrieval", "above"),
    # "At a small batch": the comparison's shared batch, the same for both configs.
    Claim("CLIP-Lite at or above CLIP in linear probe, at a small batch", CLIPLITE, "cliplite",
          "clip", "linear_probe", "at_or_above"),
    Claim("CLIP-Lite at or above CLIP in zero-shot, at a small batch", CLIPLITE, "cliplite",
          "clip", "zero_shot", "at_or_above"),
    Claim("SigLIP against CLIP in zero-shot, same batch (reference)", "2303.15343", "siglip",
          "clip", "zero_shot", None),
    Claim("SigLIP against CLIP in retrieval, same batch (reference)", "2303.15343", "siglip",
          "clip", "retrieval", None),
    Claim("SigLIP against CLIP in linear probe, same batch (reference)", "2303.15343", "siglip",
          "clip", "linear_probe", None),
)


def sanity_claims(configs) -> tuple[Claim, ...]:
  """Every trained config above the untrained towers in linear probe."""
  return tuple(Claim(f"{name} above the untrained towers in linear probe", "", name, UNTRAINED,
                     "linear_probe", "above") for name in configs if name != UNTRAINED)


def claims_for(configs) -> tuple[Claim, ...]:
  """The claims whose two configs both ran: the papers' first, then the sanity rows."""
  present = set(configs)
  claims = PAPER_CLAIMS + (sanity_claims(configs) if UNTRAINED in present else ())
  return tuple(c for c in claims if c.a in present and c.b in present)


def t_quantile(p: float, df: int) -> float:
  """The p-quantile (p > 0.5) of Student's t with integer df >= 1: bisection on the exact
  finite-series CDF (Abramowitz & Stegun 26.7.3-4)."""
  if not 0.5 < p < 1 or df < 1 or int(df) != df:
    raise ValueError(f"t_quantile needs 0.5 < p < 1 and an integer df >= 1, got p={p}, df={df}.")
  lo, hi = 0.0, 1.0
  while _t_cdf(hi, int(df)) < p:
    hi *= 2
  for _ in range(200):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if _t_cdf(mid, int(df)) < p else (lo, mid)
  return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
  """P(T <= t) for t >= 0: (1 + A(t | df)) / 2, A the probability of |T| < t."""
  theta = math.atan(t / math.sqrt(df))
  c2 = math.cos(theta) ** 2
  if df % 2:  # Odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...)).
    term, series = 1.0, 1.0 if df > 1 else 0.0
    for k in range(1, (df - 1) // 2):
      term *= (2 * k) / (2 * k + 1) * c2
      series += term
    a = 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
  else:  # Even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...).
    term, series = 1.0, 1.0
    for k in range(1, df // 2):
      term *= (2 * k - 1) / (2 * k) * c2
      series += term
    a = math.sin(theta) * series
  return (1 + a) / 2


def paired_interval(differences) -> tuple[float, float, float]:
  """(mean, CI low, CI high) of paired differences; NaN bounds below two values."""
  n = len(differences)
  if n == 0:
    return math.nan, math.nan, math.nan
  mean = sum(differences) / n
  if n < 2:
    return mean, math.nan, math.nan
  sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
  half = t_quantile(1 - (1 - CONFIDENCE) / 2, n - 1) * sd / math.sqrt(n)
  return mean, mean - half, mean + half


def verdict(direction: str | None, low: float, high: float, n: int,
            margin: float = MARGIN) -> str:
  """The module docstring's rule."""
  if direction not in DIRECTIONS:
    raise ValueError(f"unknown claim direction {direction!r}; use one of {DIRECTIONS}.")
  if n == 0:
    return "no data"
  if direction is None:
    return "reference"
  if math.isnan(low) or math.isnan(high):
    return "inconclusive"
  if direction == "above":
    return "holds" if low > 0 else "refuted" if high < 0 else "inconclusive"
  if direction == "below":
    return "holds" if high < 0 else "refuted" if low > 0 else "inconclusive"
  return "holds" if low > -margin else "refuted" if high < -margin else "inconclusive"


def judge_claim(claim: Claim, rows: list[dict]) -> dict:
  """One claim against the runs' rows ({'config', 'seed', metrics...}): its paired
  differences per seed, their mean, CI and verdict."""
  metric = METRICS[claim.metric]
  by_seed = {name: {int(r["seed"]): metric(r) for r in rows if r["config"] == name}
             for name in (claim.a, claim.b)}
  seeds = sorted(s for s, v in by_seed[claim.a].items()
                 if v is not None and by_seed[claim.b].get(s) is not None)
  differences = [by_seed[claim.a][s] - by_seed[claim.b][s] for s in seeds]
  mean, low, high = paired_interval(differences)
  return {"claim": claim.text, "paper": claim.paper, "a": claim.a, "b": claim.b,
          "metric": claim.metric, "direction": claim.direction or "", "seeds": seeds,
          "differences": differences, "n": len(seeds), "mean": mean, "low": low,
          "high": high, "verdict": verdict(claim.direction, low, high, len(seeds))}


def judge_claims(rows: list[dict]) -> list[dict]:
  configs = list(dict.fromkeys(r["config"] for r in rows))
  return [judge_claim(c, rows) for c in claims_for(configs)]


def _number(value) -> float | None:
  if value in (None, ""):
    return None
  value = float(value)
  return None if math.isnan(value) else value
