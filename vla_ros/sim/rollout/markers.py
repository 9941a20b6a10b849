"""Traffic as visualization_msgs/MarkerArray for rollout.mcap: one cube per vehicle in odom, so
Foxglove's 3D panel (or RViz) shows the other cars around the ego. Built here from the type
store (the node never publishes markers)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla_ros.ros import messages
from vla_ros.sensors.geometry import yaw_to_quat

TRAFFIC_TOPIC = "/rollout/traffic"
_T = messages.TYPESTORE.types
_LIFETIME_NS = 150_000_000  # a little over the 10 Hz at which they are written: stale cubes vanish
_ROLE_COLORS = {"lead": (0.85, 0.25, 0.2), "cut_in": (0.9, 0.6, 0.1), "passing": (0.3, 0.45, 0.85)}


def traffic_markers(stamp_ns: int, frame_id: str, vehicles: Sequence[Any]) -> Any:
    """A MarkerArray with a cube per vehicle (centre at half its height), coloured by role."""
    out = []
    for v in vehicles:
        r, g, b = _ROLE_COLORS.get(v.role, (0.6, 0.6, 0.6))
        out.append(_T["visualization_msgs/msg/Marker"](
            header=messages.header(stamp_ns, frame_id), ns="traffic", id=int(v.vid), type=1, action=0,  # CUBE, ADD
            pose=messages.pose((v.x, v.y, v.height / 2), yaw_to_quat(v.yaw)),
            scale=messages.vector3(v.length, v.width, v.height),
            color=_T["std_msgs/msg/ColorRGBA"](r=r, g=g, b=b, a=0.9),
            lifetime=_T["builtin_interfaces/msg/Duration"](sec=0, nanosec=_LIFETIME_NS), frame_locked=False,
            points=[], colors=[], texture_resource="",
            texture=messages.compressed_image(stamp_ns, frame_id, b"", ""), uv_coordinates=[], text=f"{v.role} {v.vid}",
            mesh_resource="", mesh_file=_T["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
            mesh_use_embedded_materials=False,
        ))
    return _T["visualization_msgs/msg/MarkerArray"](markers=out)
