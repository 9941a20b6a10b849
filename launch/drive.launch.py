"""ros2 launch vla_ros drive.launch.py [config:=FILE] [model:=PATH|PRESET] [backend:=torch] [device:=cuda]
                                      [namespace:=NS] [use_sim_time:=true] [autostart:=true]

Starts the vla_ros drive node (the lifecycle node `drive_node`, lib/vla_ros/drive_node) with one parameter
file per deployment (the package's config/drive.yaml by default) and, with autostart, drives it
through configure and activate.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("vla_ros")
    autostart = LaunchConfiguration("autostart")
    node = LifecycleNode(
        package="vla_ros",
        executable="drive_node",
        name="drive_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[
            {
                # typed as strings: an empty argument must stay "" rather than parse as YAML null
                "config": ParameterValue(LaunchConfiguration("config"), value_type=str),
                "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
                "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            }
        ],
        output="screen",
        emulate_tty=True,
    )
    configure = EmitEvent(
        event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_CONFIGURE),
        condition=IfCondition(autostart),
    )
    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            start_state="configuring",
            goal_state="inactive",
            entities=[
                EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_ACTIVATE))
            ],
            handle_once=True,  # autostart activates once; a later manual configure leaves the node inactive
        ),
        condition=IfCondition(autostart),
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "drive.yaml"), description="vla_ros YAML config"),
            DeclareLaunchArgument("model", default_value="", description="checkpoint directory or preset; empty = model.path of the config"),
            DeclareLaunchArgument("backend", default_value="", description="torch | onnxruntime | tensorrt; empty = inference.backend of the config"),
            DeclareLaunchArgument("device", default_value="", description="cpu | cuda | cuda:N; empty = model.device of the config"),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay with --clock)"),
            DeclareLaunchArgument("autostart", default_value="true", description="configure and activate the lifecycle node at start"),
            node,
            activate,
            configure,
        ]
    )
