"""RankCLIP: CLIP plus list-wise ranking consistency (Zhang et al., arXiv 2404.09387).

L = L_CLIP + w (lambda_cross L_cross + lambda_in L_in), with the official code's constants
and ListMLE numerics by default (`variant=code`) or the paper's
(`--config.objectives.rankclip.variant=paper`); `--config.objectives.rankclip.list_mle=exact`
keeps the code's constants with the exact Plackett-Luce ListMLE.

Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/rankclip.py --workdir=/tmp/rankclip

At scale:
    python main.py --config=configs/rankclip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/rankclip_b16
"""

from configs import common


def get_config(arg=None):
  return common.with_objectives(arg, {
      "clip": {"weight": 1.0},
      "rankclip": {"weight": 1.0, "variant": "code"},
  })
