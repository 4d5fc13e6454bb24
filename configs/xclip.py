"""xCLIP: CLIP + lambda nCLIP on shared towers, separate heads (Zhou et al., CVPR 2023).

The default entry point. Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/xclip.py --workdir=/tmp/xclip

lambda is the nCLIP weight (1.0): --config.objectives.nclip.weight=0.5. Zero-shot and
retrieval use the CLIP joint space.

At scale:
    python main.py --config=configs/xclip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/xclip_b16
"""

from configs import common


def get_config(arg=None):
  return common.with_objectives(arg, lambda args: {
      "clip": {"weight": 1.0},
      "nclip": common.nclip_options(args, weight=1.0),
  })
