"""`vla-ros stacks` and `vla-ros pattern-bag` end to end, through the real CLI entry point."""
import json

import numpy as np
from PIL import Image

from bagtools import SMALL
from vla_ros.cli import main
from vla_ros.replay.pattern_bag import decode_pattern


def _config(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"image: {{height: {SMALL['image']['height']}, width: {SMALL['image']['width']}}}\n")
    return cfg


def test_pattern_bag_then_stacks(tmp_path, capsys):
    cfg = _config(tmp_path)
    bag = tmp_path / "bag"
    assert main(["pattern-bag", "--out", str(bag), "--config", str(cfg), "--duration", "4", "--width", "160", "--height", "96", "--format", "sqlite3"]) == 0
    out = tmp_path / "out"
    npz = tmp_path / "s.npz"
    assert main(["stacks", "--bag", str(bag), "--config", str(cfg), "--out", str(out), "--npz", str(npz), "--npz-limit", "5"]) == 0
    report = json.loads((out / "stacks.json").read_text())
    assert report["ticks_attempted"] == 41
    assert report["ticks_assembled"] + report["ticks_skipped"] == report["ticks_attempted"]
    assert report["ticks_assembled"] >= 24
    assert report["skipped_by_reason"]["ego_history_short"] == 15
    assert report["missing_topics"] == []
    for cam in ("cross_left", "front_wide", "cross_right", "front_tele"):
        assert report["cameras"][cam]["received"] >= 40 and report["cameras"][cam]["decode_errors"] == 0
    assert len(report["contact_sheets"]) == 4
    for name in report["contact_sheets"]:
        sheet = Image.open(out / name)
        assert sheet.format == "PNG" and sheet.width > 4 * 288 and sheet.height > 4 * 100
    data = np.load(npz)
    assert data["images"].shape == (5, 4, 4, 64, 96, 3) and data["images"].dtype == np.uint8
    assert data["stamps"].shape == (5, 4, 4) and data["t0"].shape == (5,)
    assert data["history_xyz"].shape == (5, 16, 3) and data["history_rot"].shape == (5, 16, 3, 3)
    assert data["t0"].dtype == np.float64 and np.all(np.diff(data["t0"]) > 0)
    assert all(t0 in stamps[:, -1] for t0, stamps in zip(data["t0"], data["stamps"]))
    assert decode_pattern(data["images"][0, 3, 0])[0] == 3
    assert "assembled" in capsys.readouterr().out


def test_limit_stops_early(tmp_path):
    cfg = _config(tmp_path)
    bag = tmp_path / "bag"
    main(["pattern-bag", "--out", str(bag), "--config", str(cfg), "--duration", "4", "--width", "96", "--height", "64"])
    assert main(["stacks", "--bag", str(bag), "--config", str(cfg), "--out", str(tmp_path / "o"), "--limit", "3"]) == 0
    assert json.loads((tmp_path / "o" / "stacks.json").read_text())["ticks_assembled"] == 3


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["stacks", "--bag", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("frames: {interval_s: 0}\n")
    assert main(["pattern-bag", "--out", str(tmp_path / "b"), "--config", str(bad)]) == 2
    assert "frames.interval_s" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
    main(["pattern-bag", "--out", str(tmp_path / "b2"), "--duration", "1", "--width", "32", "--height", "32"])
    assert main(["pattern-bag", "--out", str(tmp_path / "b2"), "--duration", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["stacks", "--bag", str(tmp_path / "b2"), "--out", str(tmp_path / "o"), "--rate", "0"]) == 2


def test_bag_without_camera_topics_reports_and_fails(tmp_path, capsys):
    cams = tmp_path / "cams.yaml"
    cams.write_text("cameras: [{name: other, topic: /other/image_raw/compressed}]\nimage: {height: 64, width: 96}\n")
    bag = tmp_path / "bag"
    main(["pattern-bag", "--out", str(bag), "--duration", "2", "--width", "96", "--height", "64"])
    assert main(["stacks", "--bag", str(bag), "--config", str(cams), "--out", str(tmp_path / "o")]) == 1
    report = json.loads((tmp_path / "o" / "stacks.json").read_text())
    assert report["missing_topics"] == ["/other/image_raw/compressed"]
    assert report["ticks_assembled"] == 0 and report["skipped_by_reason"] == {"no_frames/other": report["ticks_attempted"]}
