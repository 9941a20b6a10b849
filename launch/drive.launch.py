"""ros2 launch vla_ros drive.launch.py [config:=FILE] [model:=PATH|PRESET] [use_sim_time:=true]

Starts the vla_ros drive node with one parameter file per deployment (config/drive.yaml by
default). The node itself is `vla-ros node --transport ros`.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vla_ros")
    config = LaunchConfiguration("config")
    model = LaunchConfiguration("model")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription(
        [
            DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "drive.yaml"), description="vla_ros YAML config"),
            DeclareLaunchArgument("model", default_value="", description="checkpoint directory or preset; empty = model.path of the config"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay with --clock)"),
            Node(
                package="vla_ros",
                executable="vla-ros",
                name="vla_drive",
                arguments=["node", "--transport", "ros", "--config", config, "--model", model],
                parameters=[{"use_sim_time": use_sim_time}],
                output="screen",
                emulate_tty=True,
            ),
        ]
    )
