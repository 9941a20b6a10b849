"""Closed-loop rollouts: the procedural world driven by the node's own control path.

follower.py (the vehicle controller that tracks a published nav_msgs/Path) -> episode.py (one
episode in lockstep: world step, sensors, node core, controller; or a baseline driver) ->
footprint.py / scoring.py (AlpaSim-named metrics against the expert's drive) -> animation.py
(bird's-eye view beside the front camera, MP4 or animated WebP) -> report.py (report.html) ->
runner.py (episodes in parallel, progress) -> command.py (`vla-ros rollout`).
"""
