"""xCLIP: CLIP + lambda nCLIP on shared towers, separate heads (Zhou et al., CVPR 2023).

The default entry point. Laptop CPU, embedded data (a few minutes):
    python main.py --config=configs/xclip.py --workdir=/tmp/xclip

lambda is the nCLIP weight (1.0): --config.objectives.nclip.weight=0.5. Zero-shot and
retrieval use the CLIP joint space.

On the CPU model (`mu`, batch 128) the nCLIP term departs from the paper in two switches:
K = 64 prototypes and Sinkhorn-Knopp targets with eps 0.02 (`anti_collapse=sinkhorn`)
instead of 4096 prototypes and mean-entropy maximisation. With the paper's term its heads
collapse within 100 steps to one distribution shared by every sample (test-split mutual
information H(mean p) - mean H(p) = 0.00 nats, one distinct argmax prototype), so the term
adds nothing to CLIP; with these two switches, on the scenes benchmark at the default budget
(3 seeds), the image head keeps 1.06-1.12 nats and 48-53 distinct argmax prototypes, the text
head 1.23-1.25 nats and 56-57 (benchmarks/RESULTS.md, "nCLIP collapse";
`benchmarks/nclip_ablation.py`). The paper's term on this model:
    --config.objectives.nclip.anti_collapse=me_max --config.objectives.nclip.prototypes=4096
Larger models keep the paper's term.

At scale:
    python main.py --config=configs/xclip.py:model=B/16,batch=32768,steps=100000 \
        --workdir=/mnt/shared/xclip_b16
"""

from configs import common

# The CPU model's nCLIP term (see above).
CPU_MODEL_NCLIP = {"prototypes": 64, "anti_collapse": "sinkhorn", "sinkhorn_eps": 0.02}


def get_config(arg=None):
  def terms(args):
    tiny = args.model.split("/")[0] == "mu"
    return {"clip": {"weight": 1.0},
            "nclip": common.nclip_options(args, weight=1.0, **(CPU_MODEL_NCLIP if tiny else {}))}
  return common.with_objectives(arg, terms)
