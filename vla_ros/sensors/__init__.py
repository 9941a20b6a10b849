"""Sensing: image decoding, per-camera ring buffers, ego history, FrameStack assembly.

Independent of ROS and torch: messages are duck-typed on the standard ROS field names, so
objects from rclpy, from rosbags' deserializer and from the DDS transport are all accepted.
"""
