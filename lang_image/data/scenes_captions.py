"""Web-like captions of generated scenes (scenes.py): a random plan, then its rendering.

`plan(rng, objects)` decides what a caption says and how: which objects it mentions (each
with probability P_OBJECT, at least one, in random order) and, for each, which attributes
(colour P_COLOUR, size P_SIZE, texture P_TEXTURE, position P_POSITION; the shape by its name,
a synonym or a generic noun such as "shape"), whether it states the number of objects
(P_COUNT) and a relation between two mentioned objects (P_RELATION, when one of them is
clearly left of / above the other), its frame, list joiner, word variants, and a web-style
prefix or suffix ("stock image:", "| free download"). `render(plan, objects)` writes it:

    caption  := [prefix] frame(list [count]) [". " relation] [suffix] [end]
    list     := mention (joiner mention)*
    mention  := det [size] [texture] [colour] noun [texture-phrase] [position]

Attribute values come from `objects` at render time, so `corrupt` can change one mentioned
value (a wrong attribute) and leave every other word as it was.
"""

from __future__ import annotations

import copy

SHAPE_SYNONYMS = {"circle": ("disc", "round shape"), "square": ("box", "block"),
                  "triangle": ("triangle shape",), "star": ("star shape",),
                  "cross": ("plus sign", "plus"), "heart": ("heart shape", "love heart")}
GENERIC_NOUNS = ("shape", "object", "thing")
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
# The first word of each is the texture's class name in the label sets.
TEXTURE_WORDS = {"solid": ("solid", "filled", "plain"), "striped": ("striped", "stripy"),
                 "dotted": ("dotted", "spotted", "polka-dot"),
                 "hollow": ("hollow", "outlined", "empty")}
TEXTURE_PHRASES = {"solid": "filled in", "striped": "with stripes", "dotted": "with dots",
                   "hollow": "in outline"}
POSITION_WORDS = {
    (0, 0): ("in the top left", "at the top left"), (0, 1): ("at the top", "near the top"),
    (0, 2): ("in the top right", "at the top right"), (1, 0): ("on the left", "at the left"),
    (1, 1): ("in the centre", "in the middle"), (1, 2): ("on the right", "at the right"),
    (2, 0): ("in the bottom left", "at the bottom left"),
    (2, 1): ("at the bottom", "near the bottom"),
    (2, 2): ("in the bottom right", "at the bottom right")}
RELATION_WORDS = {"left": ("to the left of", "left of"), "right": ("to the right of", "right of"),
                  "above": ("above", "over"), "below": ("below", "under", "beneath")}
COUNT_WORDS = ("one", "two", "three", "four")
FRAMES = ("{x}", "a photo of {x}", "a picture of {x}", "an image of {x}",
          "{x} on a {bg} background", "illustration of {x}", "clipart: {x}", "there is {x}",
          "{x} in the picture", "drawing with {x}", "close-up of {x}", "simple shapes: {x}")
COUNT_FRAMES = ("{n} {shapes}: {x}", "{n} {shapes}, including {x}",
                "a picture of {n} {shapes} with {x}", "{x} among {n} {shapes}",
                "{n} {shapes} in total, {x}")
BACKGROUNDS = ("plain", "grey", "light", "pale", "white")
PREFIXES = ("stock image:", "free clipart -", "vector art:", "photo:", "new!", "#shapes",
            "wallpaper -", "img:")
SUFFIXES = ("| free download", "- stock vector", "(hd)", "#art", "#geometry", "royalty free",
            "- illustration", "| clipart")
ENDINGS = (".", ".", ".", "", "!")

P_OBJECT, P_COLOUR, P_SIZE, P_TEXTURE, P_POSITION = 0.7, 0.7, 0.25, 0.1, 0.15
P_COUNT, P_RELATION, P_PREFIX, P_SUFFIX = 0.3, 0.3, 0.2, 0.2
P_SYNONYM, P_GENERIC, P_TEXTURE_PHRASE, P_COLOUR_AFTER = 0.15, 0.05, 0.4, 0.1
JOINERS = ("and", "comma", "with", "amp")
# The scenes' image side in pixels (scenes.IMAGE_SIZE; scenes imports this module), for the
# 3 x 3 grid of position words.
IMAGE_SIZE = 64
# A relation is stated only when one axis clearly dominates the offset.
_RELATION_RATIO = 1.5


def _pick(rng, n: int) -> int:
  return int(rng.integers(n))


def _relation(a: dict, b: dict) -> str | None:
  dx, dy = b["cx"] - a["cx"], b["cy"] - a["cy"]
  if abs(dx) >= _RELATION_RATIO * abs(dy):
    return "left" if dx > 0 else "right"
  if abs(dy) >= _RELATION_RATIO * abs(dx):
    return "above" if dy > 0 else "below"
  return None


def plan(rng, objects: list[dict]) -> dict:
  """What the caption of `objects` says and in which words (see the module docstring)."""
  mentioned = [i for i in range(len(objects)) if rng.random() < P_OBJECT]
  if not mentioned:
    mentioned = [_pick(rng, len(objects))]
  mentioned = [mentioned[i] for i in rng.permutation(len(mentioned))]
  mentions = []
  for i in mentioned:
    u = rng.random(8)
    noun = "generic" if u[5] < P_GENERIC else "synonym" if u[5] < P_GENERIC + P_SYNONYM else "name"
    mentions.append(dict(
        object=i, colour=bool(u[0] < P_COLOUR), size=bool(u[1] < P_SIZE),
        texture=bool(u[2] < P_TEXTURE), position=bool(u[3] < P_POSITION),
        texture_phrase=bool(u[4] < P_TEXTURE_PHRASE), noun=noun,
        colour_after=bool(u[6] < P_COLOUR_AFTER), det="one" if u[7] < 0.15 else "a",
        variant=_pick(rng, 6)))
  relation = None
  if len(mentioned) >= 2 and rng.random() < P_RELATION:
    a, b = mentioned[0], mentioned[1]
    if _relation(objects[a], objects[b]) is not None:
      relation = dict(a=a, b=b, variant=_pick(rng, 6))
  count = rng.random() < P_COUNT
  return dict(
      mentions=mentions, relation=relation, count=bool(count),
      frame=_pick(rng, len(COUNT_FRAMES if count else FRAMES)), joiner=_pick(rng, len(JOINERS)),
      bg=_pick(rng, len(BACKGROUNDS)),
      prefix=_pick(rng, len(PREFIXES)) if rng.random() < P_PREFIX else -1,
      suffix=_pick(rng, len(SUFFIXES)) if rng.random() < P_SUFFIX else -1,
      ending=_pick(rng, len(ENDINGS)))


def _variant(options, k: int) -> str:
  return options[k % len(options)]


def _noun(m: dict, obj: dict) -> str:
  if m["noun"] == "generic":
    return _variant(GENERIC_NOUNS, m["variant"])
  if m["noun"] == "synonym":
    return _variant(SHAPE_SYNONYMS[obj["shape"]], m["variant"])
  return obj["shape"]


def _position(obj: dict, k: int) -> str:
  cell = (min(int(obj["cy"] * 3 / IMAGE_SIZE), 2), min(int(obj["cx"] * 3 / IMAGE_SIZE), 2))
  return _variant(POSITION_WORDS[cell], k)


def _mention(m: dict, obj: dict) -> str:
  words = []
  if m["size"]:
    words.append(_variant(SIZE_WORDS[obj["size"]], m["variant"]))
  if m["texture"] and not m["texture_phrase"]:
    words.append(_variant(TEXTURE_WORDS[obj["texture"]], m["variant"]))
  if m["colour"] and not m["colour_after"]:
    words.append(obj["colour"])
  words.append(_noun(m, obj))
  if m["colour"] and m["colour_after"]:
    words.append(f"in {obj['colour']}")
  if m["texture"] and m["texture_phrase"]:
    words.append(TEXTURE_PHRASES[obj["texture"]])
  if m["position"]:
    words.append(_position(obj, m["variant"]))
  det = m["det"]
  if det == "a" and words[0][0] in "aeiou":
    det = "an"
  return " ".join([det] + words)


def _join(parts: list[str], joiner: str) -> str:
  if len(parts) == 1:
    return parts[0]
  if joiner == "comma":
    return ", ".join(parts)
  if joiner == "amp":
    return " & ".join(parts)
  if joiner == "with":
    return f"{parts[0]} with {' and '.join(parts[1:])}"
  return f"{', '.join(parts[:-1])} and {parts[-1]}"


def _reference(m: dict, obj: dict) -> str:
  """'the red star': how the relation clause refers back to a mentioned object."""
  return " ".join(["the"] + ([obj["colour"]] if m["colour"] else []) + [_noun(m, obj)])


def render(plan_: dict, objects: list[dict]) -> str:
  """The caption that `plan_` describes, with attribute values read from `objects`."""
  by_object = {m["object"]: m for m in plan_["mentions"]}
  x = _join([_mention(m, objects[m["object"]]) for m in plan_["mentions"]],
            JOINERS[plan_["joiner"]])
  if plan_["count"]:
    n = len(objects)
    text = COUNT_FRAMES[plan_["frame"]].format(
        x=x, n=COUNT_WORDS[n - 1], shapes="shape" if n == 1 else "shapes")
  else:
    text = FRAMES[plan_["frame"]].format(x=x, bg=BACKGROUNDS[plan_["bg"]])
  rel = plan_["relation"]
  if rel is not None:
    a, b = objects[rel["a"]], objects[rel["b"]]
    words = _variant(RELATION_WORDS[_relation(a, b)], rel["variant"])
    text += (f". {_reference(by_object[rel['a']], a)} is {words} "
             f"{_reference(by_object[rel['b']], b)}")
  if plan_["prefix"] >= 0:
    text = f"{PREFIXES[plan_['prefix']]} {text}"
  text += ENDINGS[plan_["ending"]]
  if plan_["suffix"] >= 0:
    text = f"{text} {SUFFIXES[plan_['suffix']]}"
  return text


def corrupt(rng, plan_: dict, objects: list[dict], colours, shapes, sizes,
            textures) -> tuple[dict, list[dict]]:
  """A copy of (plan, objects) in which one attribute that the caption states of one
  mentioned object has a wrong value: its colour, shape (when named), size or texture."""
  plan_, objects = copy.deepcopy(plan_), copy.deepcopy(objects)
  options = []
  for m in plan_["mentions"]:
    stated = [k for k in ("colour", "size", "texture") if m[k]]
    if m["noun"] != "generic":
      stated.append("shape")
    options += [(m, k) for k in stated]
  if not options:  # Only generic nouns: state the colour of one object, wrongly.
    m = plan_["mentions"][0]
    m["colour"] = True
    options = [(m, "colour")]
  m, key = options[_pick(rng, len(options))]
  values = {"colour": list(colours), "shape": list(shapes), "size": list(sizes),
            "texture": list(textures)}[key]
  obj = objects[m["object"]]
  wrong = [v for v in values if v != obj[key]]
  obj[key] = wrong[_pick(rng, len(wrong))]
  return plan_, objects
