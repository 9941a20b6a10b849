"""Replay: reading and writing rosbag2 recordings, open-loop evaluation, reports."""
