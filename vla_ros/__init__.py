"""vla_ros: vision-language-action policies under ROS 2 and in bag replay."""

__version__ = "0.1.0"
