"""SigLIP: pairwise sigmoid loss with a learned, unclamped scale and a bias
(Zhai et al. 2023).

Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/siglip.py --workdir=/tmp/siglip

At scale:
    python main.py --config=configs/siglip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/siglip_b16
"""

from configs import common


def get_config(arg=None):
  return common.with_objectives(arg, {"siglip": {"weight": 1.0}})
