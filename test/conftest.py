"""Test-session setup shared by every test module."""
from vla_ros.ros.dds_discovery import keep_dds_on_loopback

# Every DDS participant a test starts (in this process or a child) discovers on this host only
# and binds to the loopback interface, as ../shared/ros2/activate configures a ROS user.
keep_dds_on_loopback()
