"""ament_python / pip build script. Dependencies live in setup.cfg.

`vla-ros` goes to bin/ for pip and colcon alike. ROS 2 finds the node as lib/vla_ros/drive_node
(`ros2 run vla_ros drive_node`, drive.launch.py), written here with this Python in its shebang
as setuptools does for console scripts, and the bundled default model is installed under
share/vla_ros/models/ so an installed node finds it from any directory.
"""
import os
import sys
from glob import glob

from setuptools import setup

# python_requires would be the place, but colcon's setup.py reader cannot parse the
# SpecifierSet setuptools makes of it.
if sys.version_info < (3, 10):
    sys.exit("vla_ros needs Python >= 3.10")

PACKAGE = "vla_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def node_script() -> str:
    """build/ros/drive_node: the node's launcher for the Python running this build."""
    path = os.path.join(HERE, "build", "ros", "drive_node")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join(HERE, "scripts", "ros", "drive_node"), encoding="utf-8") as f:
        body = f.read().split("\n", 1)[1]  # everything after the template's shebang
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"#!{sys.executable}\n{body}")
    os.chmod(path, 0o755)
    return os.path.relpath(path, HERE)


def model_files() -> list[tuple[str, list[str]]]:
    """Every model directory with a config.json under models/, files only, sub-folders kept."""
    out = []
    for model in sorted(glob("models/*/config.json")):
        for folder, _, files in sorted(os.walk(os.path.dirname(model))):
            kept = sorted(os.path.join(folder, f) for f in files if not f.startswith("."))
            if kept:
                out.append((f"share/{PACKAGE}/{folder}", kept))
    return out


setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"lib/{PACKAGE}", [node_script()]),
        *model_files(),
    ],
)
