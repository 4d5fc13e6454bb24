"""Random-access sources of image-text records (`open_source`), one registered kind a module.

    shapes                               the embedded generated dataset (shapes_source.py)
    scenes                               the generated multi-object benchmark (scenes_source.py)
    wds:/data/laion/{00000..01023}.tar   webdataset shards ('::' joins several patterns)
    csv:/data/cc3m/train.csv             CSV with `filepath` and `title` columns
    jsonl:/data/pairs/train.jsonl        one JSON object a line, same fields
    tfds:coco_captions/2017:train        a tfds dataset prepared on disk

Every source returns {"image": encoded bytes (or uint8 pixels), "caption": str | list[str],
"key": str} records and raises `base.BadSample` for a faulty sample (base.py). A new kind is
a module that calls `registry.register` and is imported below.
"""

from __future__ import annotations

from lang_image.data.sources.base import (REASONS, BadSample, DataError, Source,  # noqa: F401
                                          caption_text)
from lang_image.data.sources.registry import (KINDS, SourceKind, SourceOptions,  # noqa: F401
                                              kind_of, open_source)
# Importing a kind's module registers it.
from lang_image.data.sources import (scenes_source, shapes_source, table,  # noqa: E402,F401
                                     tfds_source, webdataset)
