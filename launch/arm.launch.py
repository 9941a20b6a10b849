"""ros2 launch vla_ros arm.launch.py model:=POLICY_DIR [config:=FILE] [device:=cuda] [namespace:=NS] ...

The vla_ros node for a robot arm: drive.launch.py with the package's config/arm.yaml (control.mode
chunk) as the default config. Every other argument is drive.launch.py's. Point `model` at a
LeRobot pi0 / pi0.5 policy directory and `config` at a copy of arm.yaml naming the robot's joints,
cameras and ros2_control controller topics (docs/arm.md).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vla_ros")
    drive = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "drive.launch.py")),
        launch_arguments={"config": LaunchConfiguration("config")}.items(),
    )
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "arm.yaml"),
                              description="vla_ros YAML config with control.mode chunk"),
        drive,
    ])
