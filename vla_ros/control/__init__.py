"""Control: turning stamped policy outputs into commands at control rate.

Re-timing trajectories to "now", output validation against physical limits, the stale-input
watchdog and the safe fallback (a comfortable stop); for robot arms, joint commands taken from
action chunks, joint limits and holding position (chunk_controller, joint_limits). Knows nothing
of torch or ROS; time is always passed in (ROS time in nanoseconds, wall or simulated).
"""
