"""ROS side: message building and conversion, the drive node core, the rclpy lifecycle node and
a ROS-less DDS transport speaking the ROS 2 wire protocol."""
