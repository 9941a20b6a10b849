"""The drive node's own process stays light: with the policy in its child process (the default),
a whole inference, deterministic decoding included, runs without importing torch in the node."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
from vla_ros.config import load_config
from vla_ros.replay.bag_io import read_messages
from vla_ros.replay.pattern_bag import PatternBagSpec, write_pattern_bag
from vla_ros.ros.clock import SimClock
from vla_ros.ros.node_core import DriveNodeCore
from vla_ros.runtime.policy_process import load_node_policy

cfg_path, bag = sys.argv[1], sys.argv[2]
cfg = load_config(cfg_path)
write_pattern_bag(bag, cfg, PatternBagSpec(duration_s=3.0))
policy, _ = load_node_policy(cfg)
published = []
core = DriveNodeCore(cfg, policy, lambda topic, msg: published.append(topic), SimClock(), model_name=cfg.model.path)
topics = [c.topic for c in cfg.cameras] + [cfg.ego.odometry_topic]
last = 0
for m in read_messages(bag, topics):
    core.on_clock(m.log_time_ns)
    core.on_message(m.topic, m.msg)
    last = m.log_time_ns
core.inference_tick(last)
core.control_tick(last + 10_000_000)
policy.close()
print(json.dumps({"torch_in_node": "torch" in sys.modules, "ticks_run": core.ticks_run, "errors": core.inference_errors,
                  "published": sorted(set(published)), "noise_scale": cfg.inference.noise_scale,
                  "accepted": core.controller.stats.accepted, "rejected": core.controller.stats.rejected,
                  "ego_state_from_buffer": core.controller.ego is core.pipeline.ego.newest() is not None,
                  "validated_actions": list(core.controller.latest.action_names) if core.controller.latest else None}))
"""


def test_a_node_inference_with_the_default_config_does_not_import_torch_in_the_node(tmp_path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text("model:\n  path: random:tiny\ninference:\n  cpu_threads: 1\n")  # everything else: the defaults
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(cfg), str(tmp_path / "bag")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["noise_scale"] == 0.0  # the deterministic default, whose noise the policy process draws
    assert result["ticks_run"] == 1 and result["errors"] == 0
    assert "/vla/trajectory" in result["published"]
    # the model's own actions reached validation, named as the checkpoint declares them
    assert result["accepted"] == 1 and result["rejected"] == {}
    assert result["validated_actions"] == ["acceleration", "curvature"]
    assert result["ego_state_from_buffer"]  # odometry parsed once: the controller holds the buffer's state
    assert result["torch_in_node"] is False  # torch lives in the policy process only


ARM_SCRIPT = r"""
import json, sys
import yaml
from vla_ros.config import config_from_dict
from vla_ros.replay.arm_pattern_bag import ArmBagSpec, write_arm_bag
from vla_ros.replay.bag_io import read_messages
from vla_ros.ros.clock import SimClock
from vla_ros.ros.node_factory import make_node_core
from vla_ros.runtime.policy_process import load_node_policy

data = yaml.safe_load(open(sys.argv[1]))
data["arm"]["limits"] = {"position_min": [-6.0], "position_max": [6.0], "max_velocity": [50.0], "max_acceleration": [1e5]}
cfg = config_from_dict(data)
bag = sys.argv[2]
write_arm_bag(bag, cfg, ArmBagSpec(duration_s=3.0))
policy, _ = load_node_policy(cfg)
published = []
core = make_node_core(cfg, policy, lambda topic, msg: published.append(topic), SimClock(), model_name=cfg.model.path)
topics = [c.topic for c in cfg.cameras] + [cfg.arm.joint_state_topic, cfg.arm.instruction_topic]
times = []
for m in read_messages(bag, topics):
    core.on_clock(m.log_time_ns)
    core.on_message(m.topic, m.msg)
    times.append(m.log_time_ns)
    if len(times) in (200, 260):  # two inferences, the second guided by the first chunk's leftover
        core.inference_tick(m.log_time_ns)
        core.control_tick(m.log_time_ns + 1_000_000)
policy.close()
print(json.dumps({"torch_in_node": "torch" in sys.modules, "ticks_run": core.ticks_run, "errors": core.inference_errors,
                  "published": sorted(set(published)), "accepted": core.controller.stats.accepted,
                  "guided": len(core.controller._guides)}))
"""


def test_an_arm_node_with_rtc_guides_does_not_import_torch_in_the_node(tmp_path):
    """The arm node builds its chunks' RTC guides (runtime.chunk_guide) without torch: the policy
    process alone holds it."""
    run = subprocess.run([sys.executable, "-c", ARM_SCRIPT, str(ROOT / "config" / "arm.yaml"), str(tmp_path / "bag")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ticks_run"] == 2 and result["errors"] == 0 and result["accepted"] >= 1
    assert result["guided"] == 1  # the second inference carried a guide
    assert "/joint_trajectory_controller/joint_trajectory" in result["published"]
    assert result["torch_in_node"] is False
