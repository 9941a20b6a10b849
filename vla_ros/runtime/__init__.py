"""Running a VLA policy: prefill -> context, reason, denoise, act (torch backend; no ROS)."""
from vla_ros.runtime.context import Context, StaleContextError
from vla_ros.runtime.inputs import NonFiniteOutputError, PolicyInputError, PolicyInputs, PolicyOutput
from vla_ros.runtime.kv_buffers import KVCapacityError
from vla_ros.runtime.policy import Policy

__all__ = ["Context", "KVCapacityError", "NonFiniteOutputError", "Policy", "PolicyInputError", "PolicyInputs",
           "PolicyOutput", "StaleContextError"]
