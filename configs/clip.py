"""CLIP: symmetric InfoNCE over the global batch (Radford et al. 2021).

Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/clip.py --workdir=/tmp/clip

At scale, e.g. a TPU pod or GPU cluster (the workdir on storage every host sees):
    python main.py --config=configs/clip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/clip_b16
"""

from configs import common


def get_config(arg=None):
  return common.with_objectives(arg, {"clip": {"weight": 1.0}})
