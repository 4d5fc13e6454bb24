"""Which multi-process setup `lang_image.distributed` picks from the environment."""

import socket

import pytest

from lang_image import distributed
from lang_image.errors import ConfigError

EXPLICIT = {"LANG_IMAGE_NUM_PROCESSES": "4", "LANG_IMAGE_PROCESS_ID": "2",
            "LANG_IMAGE_COORDINATOR": "10.0.0.1:12355"}
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_STEP_NODELIST": "gpu[001-004]", "SLURM_NTASKS": "32",
         "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}


def detect(env, tpu=False):
  return distributed.detect(env, on_cloud_tpu=tpu)


def test_nothing_configured_is_one_process():
  assert detect({}) == distributed.Plan("single")
  assert not detect({}).multi


def test_explicit_variables():
  plan = detect(EXPLICIT)
  assert (plan.source, plan.num_processes, plan.process_id, plan.coordinator) == (
      "explicit", 4, 2, "10.0.0.1:12355")
  assert plan.timeout == 300
  assert detect(dict(EXPLICIT, LANG_IMAGE_INIT_TIMEOUT="60")).timeout == 60
  # Explicit variables win over any cluster the process also runs in.
  assert detect(dict(SLURM, **EXPLICIT), tpu=True).source == "explicit"
  assert detect({"LANG_IMAGE_NUM_PROCESSES": "1"}).source == "single"


def test_slurm_inside_srun_with_several_tasks():
  plan = detect(SLURM)
  assert (plan.source, plan.num_processes, plan.process_id) == ("slurm", 32, 9)
  assert detect(dict(SLURM, SLURM_NTASKS="1", SLURM_PROCID="0")).source == "single"
  # The batch script itself (outside srun) has no step node list: one process.
  outside = {k: v for k, v in SLURM.items() if k != "SLURM_STEP_NODELIST"}
  assert detect(outside).source == "single"
  assert detect(dict(SLURM, LANG_IMAGE_DISTRIBUTED="off")).source == "single"


def test_open_mpi_and_tpu():
  ompi = {"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1:34911",
          "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "3"}
  assert (detect(ompi).source, detect(ompi).process_id) == ("ompi", 3)
  assert detect({}, tpu=True) == distributed.Plan("tpu")
  assert detect({"LANG_IMAGE_DISTRIBUTED": "off"}, tpu=True).source == "single"


def test_on_this_machine_nothing_is_detected():
  assert not distributed._on_cloud_tpu_vm()


@pytest.mark.parametrize("env, message", [
    (dict(EXPLICIT, LANG_IMAGE_NUM_PROCESSES="0"), "LANG_IMAGE_NUM_PROCESSES='0' is not a positive"),
    (dict(EXPLICIT, LANG_IMAGE_NUM_PROCESSES="two"), "is not a positive integer"),
    (dict(EXPLICIT, LANG_IMAGE_PROCESS_ID="4"), "LANG_IMAGE_PROCESS_ID='4' is not a process index "
                                                "for 4 processes; set it to a whole number from 0 to 3"),
    ({k: v for k, v in EXPLICIT.items() if k != "LANG_IMAGE_PROCESS_ID"},
     "needs LANG_IMAGE_PROCESS_ID"),
    ({k: v for k, v in EXPLICIT.items() if k != "LANG_IMAGE_COORDINATOR"},
     "needs LANG_IMAGE_COORDINATOR, the host:port of process 0"),
    (dict(EXPLICIT, LANG_IMAGE_COORDINATOR="10.0.0.1"), "is not host:port"),
    ({"LANG_IMAGE_PROCESS_ID": "1"}, "LANG_IMAGE_PROCESS_ID is set but LANG_IMAGE_NUM_PROCESSES is not"),
    ({"LANG_IMAGE_DISTRIBUTED": "maybe"}, "set it to 'auto'"),
    (dict(SLURM, SLURM_PROCID="32"), "SLURM_PROCID='32' is not a process index"),
    (dict(EXPLICIT, LANG_IMAGE_INIT_TIMEOUT="-5"), "LANG_IMAGE_INIT_TIMEOUT='-5'"),
])
def test_bad_variables_fail_with_one_sentence(env, message):
  with pytest.raises(ConfigError) as info:
    detect(env)
  text = str(info.value)
  assert message in text and "\n" not in text and text.endswith("."), text


def test_single_process_initialize_touches_nothing():
  plan = distributed.initialize({})
  assert plan.source == "single"


def test_unreachable_coordinator_fails_with_one_sentence_before_jax_starts():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]  # Bound but not listening: connections are refused.
    env = dict(EXPLICIT, LANG_IMAGE_COORDINATOR=f"127.0.0.1:{port}", LANG_IMAGE_PROCESS_ID="1",
               LANG_IMAGE_INIT_TIMEOUT="1")
    with pytest.raises(ConfigError, match="process 1 of 4 could not reach the coordinator at "
                                          f"127.0.0.1:{port} within 1 s"):
      distributed.initialize(env)


def test_coordinator_port_in_use_fails_with_one_sentence_before_jax_starts():
  with socket.socket() as s:
    s.bind(("", 0))
    s.listen()
    port = s.getsockname()[1]
    env = dict(EXPLICIT, LANG_IMAGE_COORDINATOR=f"127.0.0.1:{port}", LANG_IMAGE_PROCESS_ID="0")
    with pytest.raises(ConfigError, match=f"process 0 cannot serve as coordinator on port {port}"):
      distributed.initialize(env)
