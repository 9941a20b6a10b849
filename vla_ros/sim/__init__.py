"""A procedural driving world that records real rosbag2 files.

road.py (centreline, lanes, limits) -> scenarios.py (seeded sections: road shape, limits, traffic)
-> traffic.py / ego.py (vehicles, expert driver) -> world.py (fixed-step simulation, Timeline)
-> scene.py (one instant in the ego frame) -> camera.py / render.py / glyphs.py (pixels)
-> labels.py (ground truth, reasoning sentences) -> record.py (rosbag2), preview.py (PNG),
command.py (`vla-ros sim`).
"""
