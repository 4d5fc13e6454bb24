"""Trains a SentencePiece tokenizer on a data source's captions.

    python -m lang_image.train_tokenizer --source='wds:/data/{00000..00099}.tar' \\
        --vocab_size=32000 --output=/data/tokenizer.model

--source takes any config.data.name spec, mixtures included (quote brace patterns). A
built-in dataset (the default, shapes) keeps its tokenizer beside itself unless --output
is given; point config.data.tokenizer at --output to use it in a run.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import ConfigDict

from lang_image.data import pipeline
from lang_image.data import sources as sources_lib
from lang_image.data import tokenizer as tokenizer_lib
from lang_image.errors import ConfigError

_SOURCE = flags.DEFINE_string("source", "shapes", "A config.data.name spec, such as "
                              "wds:/data/{00000..00099}.tar, or a mixture.")
_OUTPUT = flags.DEFINE_string("output", "", "Where to write the model; empty only for a "
                              "built-in dataset (kept next to it).")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "As config.data.data_dir (empty: "
                                "$LANG_IMAGE_DATA_DIR or ~/.cache/lang_image).")
_VARIANT = flags.DEFINE_string("variant", "default", "As config.data.variant: the built-in "
                               "dataset's size, default or tiny.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 1000, "Upper bound on the vocabulary size.")
_SAMPLES = flags.DEFINE_integer("samples", 200_000, "How many samples' captions to train on.")
_IMAGE_KEY = flags.DEFINE_string("image_key", "", "As config.data.image_key.")
_TEXT_KEY = flags.DEFINE_string("text_key", "", "As config.data.text_key.")
_CSV_SEPARATOR = flags.DEFINE_string("csv_separator", ",", "As config.data.csv_separator.")


def train(data_cfg, output: str, vocab_size: int, samples: int) -> str:
  """Trains on the sources data_cfg.name names -> the model's path."""
  mixture = pipeline.parse_mixture(data_cfg.name)
  own = sources_lib.kind_of(mixture[0][0]).tokenizer if len(mixture) == 1 else None
  if own is not None and not output:
    return own(pipeline.source_options(data_cfg), vocab_size)
  if not output:
    raise ConfigError(f"--source={data_cfg.name} keeps no tokenizer of its own; give "
                      "--output=PATH for the model.")
  sources, weights = pipeline.open_sources(data_cfg)
  skipped = tokenizer_lib.train_on_sources(sources, output, vocab_size, samples, weights)
  print(f"skipped samples: {skipped or 'none'}")
  return output


def main(argv) -> None:
  del argv
  data_cfg = ConfigDict(dict(
      name=_SOURCE.value, data_dir=_DATA_DIR.value, variant=_VARIANT.value,
      image_key=_IMAGE_KEY.value, text_key=_TEXT_KEY.value,
      csv_separator=_CSV_SEPARATOR.value, skip_bad_shards=False, tfds_data_dir=""))
  try:
    path = train(data_cfg, _OUTPUT.value, _VOCAB_SIZE.value, _SAMPLES.value)
  except ConfigError as e:
    raise SystemExit(f"error: {e}") from None
  tok = tokenizer_lib.load(path)
  example = "A photo of one red star in the top left corner."
  ids = tok.encode([example], 24)
  print(f"tokenizer: {path}")
  print(f"vocab size: {tok.vocab_size}")
  print(f"encode({example!r}) = {ids[0].tolist()}")
  print(f"decode -> {tok.decode(ids)[0]!r}")


if __name__ == "__main__":
  app.run(main)
