"""`vla-ros rollout` end to end on a short episode with the bundled model: the files it writes,
that they are what they say, reproducibility, and its usage errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_ros.cli import main
from vla_ros.replay.bag_io import bag_info, read_messages

MODEL = str(Path(__file__).resolve().parents[1] / "models" / "drive-tiny")
VOLATILE = ("wall_s", "inference_latency_ms")  # wall-clock figures


def _rollout(out: Path, *extra: str) -> int:
    return main(["rollout", "--model", MODEL, "--episodes", "1", "--seed", "11", "--scenario", "follow", "--duration", "2",
                 "--out", str(out), "--workers", "1", *extra])


def _stable(metrics: dict) -> dict:
    return {name: {m: {k: v for k, v in s.items() if k not in VOLATILE} for m, s in ep.items()} for name, ep in metrics["episodes"].items()}


@pytest.mark.skipif(not Path(MODEL, "model.safetensors").is_file(), reason="models/drive-tiny is not in this checkout")
def test_rollout_writes_metrics_report_bag_animation_and_is_reproducible(tmp_path: Path) -> None:
    assert _rollout(tmp_path / "a") == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    ep = metrics["episodes"]["ep00_seed11"]
    assert set(ep) == {"model", "expert", "constant_velocity"}
    model = ep["model"]
    assert model["inferences"] >= 20  # 10 Hz from the first complete ego history on
    assert model["fallback_time_s"] == 0.0  # the node published its own trajectories after the warm-up
    assert ep["expert"]["progress"] == 1.0 and ep["expert"]["dist_to_gt_trajectory"] == 0.0
    assert metrics["overall"]["model"]["episodes"] == 1 and "driving_score" in metrics["overall"]["constant_velocity"]
    mcap = tmp_path / "a" / model["files"]["mcap"]
    topics = bag_info(mcap).topic_types
    for topic in ("/ego/odom", "/tf", "/tf_static", "/vla/trajectory", "/cameras/front_wide/image_raw/compressed", "/rollout/expert_path",
                  "/rollout/traffic"):
        assert topic in topics
    paths = [m for m in read_messages(mcap, ["/vla/trajectory"])]
    assert len(paths) >= 20 and all(len(p.msg.poses) > 10 for p in paths)  # 10 Hz from the first output on
    anim = tmp_path / "a" / model["files"]["animation"]
    assert anim.stat().st_size > 10_000
    page = (tmp_path / "a" / "report.html").read_text()
    assert "driving score" in page and model["files"]["animation"] in page and "data:image/png;base64," in page
    # same seed, model and workers: the same metrics
    assert _rollout(tmp_path / "b") == 0
    assert _stable(json.loads((tmp_path / "b" / "metrics.json").read_text())) == _stable(metrics)


@pytest.mark.parametrize("args, message", [
    (["--duration", "0"], "--duration must be in (0, 3600]"),
    (["--scenario", "rally"], "unknown scenario"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--model", "no/such/model"], "not found"),
])
def test_usage_errors_stop_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    out = tmp_path / "out"
    assert main(["rollout", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.skipif(not Path(MODEL, "model.safetensors").is_file(), reason="models/drive-tiny is not in this checkout")
def test_rollout_over_dds_follows_the_node_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--transport dds: the real node process, fed over DDS with /clock, drives the episode."""
    pytest.importorskip("cyclonedds")
    import os
    import time

    monkeypatch.setenv("ROS_DOMAIN_ID", str(20 + (os.getpid() + int(time.time())) % 40))  # a domain of its own (0..101)
    assert _rollout(tmp_path / "dds", "--transport", "dds") == 0
    metrics = json.loads((tmp_path / "dds" / "metrics.json").read_text())
    assert metrics["run"]["mode"].startswith("dds")
    model = metrics["episodes"]["ep00_seed11"]["model"]
    assert model["inferences"] >= 1 and model["inference_latency_ms"] is not None  # heard on the latency topic
    assert model["fallback_fraction"] < 1.0  # it followed policy trajectories the node published
    paths = list(read_messages(tmp_path / "dds" / model["files"]["mcap"], ["/vla/trajectory"]))
    assert paths and all(len(p.msg.poses) >= 2 for p in paths)
