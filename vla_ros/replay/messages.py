"""Moved to `vla_ros.ros.messages` (message building belongs to the ros layer, which replay and
sim may import). Kept only while code written against the old path is updated."""
from vla_ros.ros.messages import *  # noqa: F401,F403
from vla_ros.ros.messages import TYPESTORE, encode_jpeg, encode_png  # noqa: F401
