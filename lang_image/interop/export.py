"""lang_image towers -> a Hugging Face transformers CLIPModel folder.

    python -m lang_image.interop.export --workdir=W --out=DIR [--step=N] \
        [--config=configs/clip.py[:args] --config.field=value ...]
    python -m lang_image.interop.export --weights=openai:ViT-B-32.pt --out=DIR \
        [--tokenizer=bpe_simple_vocab_16e6.txt.gz]

The first form restores a training run's checkpoint (newest, or --step), rebuilt from --config
or else from the W/config.json the run wrote; the second converts imported weights (hf: or
openai:, as config.init takes them) without training. DIR receives config.json,
model.safetensors and preprocessor_config.json (pixel mean and std of config.model.image_norm),
plus vocab.json and merges.txt when the tokenizer is CLIP's BPE, so that
`CLIPModel.from_pretrained(DIR)` and `CLIPTokenizer.from_pretrained(DIR)` load it.

Only CLIP-shaped towers can be written: class-token pooling, a patch stem, a LayerNorm before
the first ViT block, a causal text tower pooled at its end-of-text token, no logit bias. Runs
started from imported weights have them; lang_image's default CPU model (conv stem, mean
pooling) does not, and the command names what is missing.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from flax import nnx  # noqa: E402

from lang_image import checkpoint, parallel, saved_config  # noqa: E402
from lang_image import config as config_lib  # noqa: E402
from lang_image.data import pipeline  # noqa: E402
from lang_image.data import tokenizer as tokenizer_lib  # noqa: E402
from lang_image.errors import ConfigError  # noqa: E402
from lang_image.interop import architecture, bpe, hf, pretrained  # noqa: E402
from lang_image.trainer import Trainer  # noqa: E402

def define_flags():
  """The command's flags, defined only when it runs (other modules define --out too)."""
  return dict(
      config=config_flags.DEFINE_config_file(
          "config", None, "The training config (default: W/config.json).", lock_config=True),
      workdir=flags.DEFINE_string("workdir", None, "A training run's workdir."),
      step=flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest)."),
      weights=flags.DEFINE_string("weights", None, "Imported weights instead of a workdir: "
                                  "hf:/folder or openai:/file."),
      tokenizer=flags.DEFINE_string("tokenizer", None, "With --weights: a CLIP BPE vocabulary "
                                    "to write beside the model (default: the hf: folder's)."),
      out=flags.DEFINE_string("out", None, "The folder to write."))


def export_towers(towers, out: str, *, image_norm: str = "clip", tokenizer=None,
                  eos_id: int | None = None) -> None:
  """Writes TwoTower `towers` as a CLIPModel folder (module docstring).

  `tokenizer` (or `eos_id`) gives the end-of-text id for towers pooled at the last non-pad
  token; a CLIP BPE tokenizer is also written beside the model.
  """
  if tokenizer is not None:
    eos_id = tokenizer.eos_id
  arch = architecture.of_towers(towers, eos_id, image_norm)
  token_ids = {}
  if tokenizer is not None:
    token_ids = {"bos": getattr(tokenizer, "bos_id", tokenizer.eos_id), "pad": tokenizer.pad_id}
  hf.write(out, arch, architecture.tower_params(towers), token_ids=token_ids)
  if isinstance(tokenizer, bpe.BpeTokenizer):
    tokenizer.save(out)


def restore_towers(config, workdir: str, step: int | None = None):
  """(towers, tokenizer) of the checkpoint at `step` (newest: None) of a training run."""
  config_lib.validate(config, None)
  mesh = parallel.make_mesh(config.mesh)
  dataset = pipeline.open_for(config)
  trainer = Trainer(config, mesh, dataset.tokenizer.vocab_size)
  ckpt = checkpoint.Checkpointer(workdir, 0, config.keep_checkpoints)
  try:
    restored = ckpt.restore(trainer.abstract_state, step)
  finally:
    ckpt.close()
  if restored is None:
    raise ConfigError(f"no checkpoint in '{ckpt.directory}'; train there first or "
                                 "pass the workdir of a training run.")
  state, _ = restored
  return nnx.merge(trainer.graphdef, state["params"], state["rest"]).towers, dataset.tokenizer


def export_weights(spec: str, out: str, tokenizer_path: str | None = None) -> None:
  """Converts 'hf:...' / 'openai:...' weights to a CLIPModel folder."""
  towers, arch = pretrained.load(spec)
  kind, path = pretrained.parse(spec)
  if tokenizer_path is None and kind == "hf" and os.path.isfile(os.path.join(path, "vocab.json")):
    tokenizer_path = path
  tokenizer = tokenizer_lib.load(tokenizer_path) if tokenizer_path else None
  export_towers(towers, out, image_norm=arch.image_norm, tokenizer=tokenizer, eos_id=arch.eos_id)


def main(argv, args):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  out, workdir, weights = args["out"].value, args["workdir"].value, args["weights"].value
  try:
    if not out:
      raise ConfigError("--out is required: the folder to write the model into.")
    if bool(weights) == bool(workdir):
      raise ConfigError("give either --workdir (a training run) or --weights "
                        "(hf:/folder or openai:/file), not both or neither.")
    if weights:
      export_weights(weights, out, args["tokenizer"].value)
    else:
      config = args["config"].value
      if config is None:
        config = saved_config.load(workdir)
      towers, tokenizer = restore_towers(config, workdir, args["step"].value)
      export_towers(towers, out, image_norm=config.model.image_norm,
                    tokenizer=tokenizer)
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"wrote {os.path.abspath(out)}")


if __name__ == "__main__":
  import functools
  app.run(functools.partial(main, args=define_flags()))
