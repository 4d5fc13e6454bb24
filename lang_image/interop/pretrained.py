"""Released CLIP weights as the starting point of a run: `--config.init=hf:DIR | openai:FILE`.

  hf:DIR       a transformers CLIPModel folder (config.json + model.safetensors or
               pytorch_model.bin), see hf.py;
  openai:FILE  an OpenAI CLIP / open_clip ViT state_dict (.pt, .bin, .safetensors), see
               openai.py.

`configure(config)`, called by lang_image.config.validate, reads the checkpoint's architecture
and sets config.model to it (so the model that train.run builds has the checkpoint's shape),
and points config.data.tokenizer at the folder's vocab.json + merges.txt for hf: when it is
empty. OpenAI files carry no vocabulary: set config.data.tokenizer to CLIP's
bpe_simple_vocab_16e6.txt.gz (open_clip ships it) or to a folder with vocab.json + merges.txt.
`init_state(state, spec)`, called by train.run when there is no checkpoint to resume, replaces
the freshly initialised tower parameters with the imported ones; objective heads keep their
initialisation, and a resumed run reads everything from its own checkpoint.

    python -m lang_image.interop.pretrained hf:DIR     prints the config.model fields it would set
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from absl import logging
from flax import nnx

from lang_image.interop import architecture, hf, openai
from lang_image.interop.architecture import ClipArchitecture
from lang_image.interop.tensors import CheckpointError

SOURCES = {"hf": hf, "openai": openai}


def parse(spec: str) -> tuple[str, str]:
  """'hf:/path' -> ('hf', '/path')."""
  kind, sep, path = str(spec).partition(":")
  if not sep or kind not in SOURCES or not path:
    raise CheckpointError(f"config.init={spec!r} names no weights; write hf:/path/to/folder "
                          "(transformers CLIPModel) or openai:/path/to/file.pt (OpenAI CLIP / "
                          "open_clip state_dict).")
  return kind, os.path.expanduser(path)


def read_architecture(spec: str) -> ClipArchitecture:
  kind, path = parse(spec)
  return SOURCES[kind].read_architecture(path)


def read(spec: str) -> tuple[ClipArchitecture, dict[tuple, np.ndarray]]:
  """(architecture, flat {tower path: float32 array}) of 'hf:...' or 'openai:...'."""
  kind, path = parse(spec)
  arch, params = SOURCES[kind].read(path)
  architecture.check_against(param_shapes(arch), params, f"'{path}'")
  return arch, params


def param_shapes(arch: ClipArchitecture) -> dict[tuple, tuple]:
  abstract = nnx.eval_shape(arch.build)
  return {p: tuple(v.shape) for p, v in architecture.flatten(
      nnx.to_pure_dict(nnx.state(abstract, nnx.Param))).items()}


def load(spec: str):
  """-> (TwoTower with the imported weights, its ClipArchitecture)."""
  arch, params = read(spec)
  return towers_with(arch, params), arch


def towers_with(arch: ClipArchitecture, params: dict[tuple, np.ndarray]):
  """TwoTower of `arch` holding `params`, built without initialising anything at random."""
  graphdef, state = nnx.split(nnx.eval_shape(arch.build))
  shapes = architecture.flatten(nnx.to_pure_dict(state))
  architecture.check_against({p: v.shape for p, v in shapes.items()}, params, "the weights")
  nnx.replace_by_pure_dict(state, architecture.nest(
      {p: jax.numpy.asarray(params[p], shapes[p].dtype) for p in shapes}))
  return nnx.merge(graphdef, state)


def configure(config) -> None:
  """Sets config.model (and, for hf:, an empty config.data.tokenizer) from config.init."""
  spec = config.init
  if not spec:
    return
  kind, path = parse(spec)
  arch = read_architecture(spec)
  with config.unlocked():
    for key, value in arch.model_fields().items():
      config.model[key] = value
    if not config.data.tokenizer:
      if kind == "hf" and all(os.path.isfile(os.path.join(path, n))
                              for n in ("vocab.json", "merges.txt")):
        config.data.tokenizer = path
      else:
        raise CheckpointError(f"config.init={spec} brings no vocabulary; set "
                              "config.data.tokenizer to CLIP's bpe_simple_vocab_16e6.txt.gz "
                              "or to a folder with vocab.json and merges.txt.")


def init_state(state: dict, spec: str) -> dict:
  """The train state with its tower parameters replaced by the weights of `spec`, placed with
  the shardings the fresh ones have."""
  _, params = read(spec)
  pure = nnx.to_pure_dict(state["params"])
  fresh = architecture.flatten(pure["towers"])
  architecture.check_against(
      {p: v.shape for p, v in fresh.items()}, params,
      f"config.init={spec} (config.model and the tokenizer must be the checkpoint's, which "
      "lang_image.config.validate sets)")

  def place(path):
    old = fresh[path]
    value = np.asarray(params[path], old.dtype)
    return jax.make_array_from_callback(value.shape, old.sharding, lambda idx: value[idx])

  pure["towers"] = architecture.nest({p: place(p) for p in fresh})
  nnx.replace_by_pure_dict(state["params"], pure)
  logging.info("Towers initialised from %s.", spec)
  return state


def main(argv: list[str]) -> int:
  if len(argv) != 2:
    print("usage: python -m lang_image.interop.pretrained hf:DIR | openai:FILE", file=sys.stderr)
    return 2
  try:
    arch = read_architecture(argv[1])
  except CheckpointError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for key, value in arch.model_fields().items():
    print(f"config.model.{key} = {value!r}")
  print(f"vocabulary size {arch.vocab_size}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
