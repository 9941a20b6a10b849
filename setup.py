"""ament_python / pip build script. Dependencies live in setup.cfg.

Console scripts (`vla-ros`, `drive_node`) go to bin/ for pip and colcon alike; ROS 2 also finds
the node as `ros2 run vla_ros drive_node` through lib/vla_ros/, and the bundled default model
is installed under share/vla_ros/models/ so an installed node finds it from any directory.
"""
import sys
from glob import glob

from setuptools import setup

# python_requires would be the place, but colcon's setup.py reader cannot parse the
# SpecifierSet setuptools makes of it.
if sys.version_info < (3, 10):
    sys.exit("vla_ros needs Python >= 3.10")

PACKAGE = "vla_ros"


def model_files() -> list[tuple[str, list[str]]]:
    return [(f"share/{PACKAGE}/{d}", sorted(f for f in glob(f"{d}/*") if not f.endswith("/"))) for d in sorted(glob("models/*/"))]


setup(
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"lib/{PACKAGE}", ["scripts/ros/drive_node"]),
        *[(dest.rstrip("/"), files) for dest, files in model_files()],
    ],
)
