"""The ROS 2 package metadata and the pip install agree, and the command line answers."""
import ast
import configparser
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from vla_ros.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format_3_ament_python_with_the_ros_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "vla_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    for dep in ("rclpy", "ament_index_python", "lifecycle_msgs", "launch_ros", "sensor_msgs", "nav_msgs", "std_msgs", "geometry_msgs",
                "diagnostic_msgs", "rosgraph_msgs", "python3-torch", "python3-rosbags-pip", "python3-transformers-pip"):
        assert dep in deps, dep
    assert "cv_bridge" not in deps  # never imported: images are decoded without it
    assert root.findall("test_depend")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == root.findtext("version")


def test_setup_installs_resource_marker_launch_and_config():
    tree = ast.parse((ROOT / "setup.py").read_text())
    source = ast.unparse(tree)
    for needle in ("resource_index/packages", "resource/", "launch/*.launch.py", "config/*.yaml", "package.xml"):
        assert needle in source
    assert (ROOT / "resource" / "vla_ros").is_file()
    assert (ROOT / "launch" / "drive.launch.py").is_file() and (ROOT / "config" / "drive.yaml").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "vla-ros = vla_ros.cli:main" in cfg["options.entry_points"]["console_scripts"]
    extras = cfg["options.extras_require"]
    assert {"dds", "export", "gpu", "test"} <= set(extras)


def test_launch_file_is_valid_python_with_a_generate_function():
    tree = ast.parse((ROOT / "launch" / "drive.launch.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_every_registered_command_has_help():
    parser = build_parser()
    text = parser.format_help()
    for name in COMMANDS:
        assert name in text


@pytest.mark.parametrize("argv", [["--help"], ["stacks", "--help"], ["--version"]])
def test_console_script_runs(argv):
    exe = Path(sys.executable).parent / "vla-ros"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vla_ros.cli"]
    out = subprocess.run(cmd + argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "vla" in out.stdout.lower()
