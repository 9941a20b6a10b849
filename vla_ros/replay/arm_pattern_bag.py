"""Arm test bags: a robot arm whose joints follow known sinusoids, recorded as a ros2_control robot
would record it (joint states, cameras, an instruction, the commands sent to
joint_trajectory_controller), for `vla-ros eval` in chunk mode and for replaying into the node.

- commands: trajectory_msgs/JointTrajectory at `command_hz` on arm.joint_trajectory_topic, each
  one point: the reference position (and velocity) due action_dt_s after its header stamp. This
  is the ground truth the evaluation compares a chunk with.
- joint states: sensor_msgs/JointState at `joint_hz`, the reference `tracking_lag_s` late (the
  arm follows its commands), joints listed in reverse order (a state is mapped by name).
- cameras: images drawn from the measured joint positions (`arm_image`), so a policy can read the
  state off them: the top camera sees the arm as a planar chain of links, the wrist camera one
  bar per joint whose height is the joint's position within its limits.
- the instruction: std_msgs/String, once at the start (and at any `instruction_changes`),
  recorded as offered transient local (latched) like /tf_static.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from vla_ros.config import Config
from vla_ros.replay.bag_io import BagFormat, BagWriter
from vla_ros.ros import messages

DEFAULT_INSTRUCTION = "follow the pattern with the arm"
_BAR_COLORS = ((230, 60, 50), (240, 160, 30), (230, 220, 40), (60, 190, 80), (50, 140, 230), (170, 80, 220))


@dataclass(frozen=True)
class JointMotion:
    """Joint j follows centre_j + amp_j sin(2 pi t / period_j + 0.7 j): each joint its own period
    (base_period_s * (1 + 0.25 j)), centred in its limits, amplitude at most 90% of its half range."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    amplitude: float = 0.6
    base_period_s: float = 2.0

    def _terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = np.asarray(self.lower, dtype=np.float64), np.asarray(self.upper, dtype=np.float64)
        j = np.arange(len(lo))
        centre = (lo + hi) / 2
        amp = np.minimum(self.amplitude, 0.9 * (hi - lo) / 2)
        omega = 2 * np.pi / (self.base_period_s * (1 + 0.25 * j))
        return centre, amp, omega, 0.7 * j

    def positions(self, t: float) -> np.ndarray:
        centre, amp, omega, phase = self._terms()
        return centre + amp * np.sin(omega * t + phase)

    def velocities(self, t: float) -> np.ndarray:
        _, amp, omega, phase = self._terms()
        return amp * omega * np.cos(omega * t + phase)


def joint_bounds(config: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-joint position limits of `config.arm` (default +-pi where none are set)."""
    n = len(config.arm.joint_names)
    lo = config.arm.limits.per_joint("position_min", n) or (-np.pi,) * n
    hi = config.arm.limits.per_joint("position_max", n) or (np.pi,) * n
    return tuple(lo), tuple(hi)


def arm_image(camera_index: int, positions: np.ndarray, lower: np.ndarray, upper: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB view of the arm at `positions`: camera 0 draws the links as a planar
    chain from the bottom centre (each joint angle added to the previous link's), every other
    camera one coloured bar per joint, its height the joint's position within [lower, upper]."""
    img = Image.new("RGB", (width, height), (30, 30, 36) if camera_index == 0 else (20, 24, 40 + 30 * (camera_index % 4)))
    draw = ImageDraw.Draw(img)
    frac = np.clip((np.asarray(positions) - lower) / np.maximum(upper - lower, 1e-9), 0.0, 1.0)
    n = len(positions)
    if camera_index == 0:
        x, y, angle = width / 2, height - 2.0, -np.pi / 2  # pointing up
        link = 0.9 * min(width / 2, height) / max(0.6 * n, 1)  # a bent chain rarely reaches its full length
        line = max(1, round(min(width, height) / 24))
        for j, q in enumerate(positions):
            angle += float(q)
            nx, ny = x + link * np.cos(angle), y + link * np.sin(angle)
            draw.line([(x, y), (nx, ny)], fill=_BAR_COLORS[j % len(_BAR_COLORS)], width=line)
            x, y = nx, ny
    else:
        edges = np.linspace(0, width, n + 1)
        for j in range(n):
            top = (height - 1) * (1.0 - frac[j])
            draw.rectangle([edges[j] + 1, top, edges[j + 1] - 2, height - 1], fill=_BAR_COLORS[j % len(_BAR_COLORS)])
    return np.asarray(img)


@dataclass(frozen=True)
class ArmBagSpec:
    duration_s: float = 4.0
    camera_hz: float = 30.0
    joint_hz: float = 100.0
    command_hz: float = 50.0
    tracking_lag_s: float = 0.03  # joint states trail the commanded reference by this much
    camera_skew_s: float = 0.002  # camera v is stamped v * skew after camera 0
    height: int = 48
    width: int = 64
    start_s: float = 1000.0
    amplitude: float = 0.6  # rad
    base_period_s: float = 2.0
    instruction: str = DEFAULT_INSTRUCTION
    instruction_changes: tuple[tuple[float, str], ...] = ()  # (seconds after the start, new instruction)
    bad_state_every: int = 0  # every Nth joint state is bad (alternately a NaN position and a missing joint); 0: none
    compressed_format: str = "jpeg"


def write_arm_bag(path: str | Path, config: Config, spec: ArmBagSpec = ArmBagSpec(), fmt: BagFormat = "mcap",
                  overwrite: bool = False, progress: bool = False) -> dict[str, int]:
    """Write an arm test bag for `config` (its cameras and arm section). Returns messages per topic."""
    config = config.resolve_topics()  # bags hold absolute topic names
    arm = config.arm
    if not arm.joint_names:
        raise ValueError("the config names no joints (arm.joint_names); an arm bag needs a config such as config/arm.yaml")
    if not arm.joint_trajectory_topic:
        raise ValueError("the config has no arm.joint_trajectory_topic to record the commands on")
    lower, upper = joint_bounds(config)
    motion = JointMotion(lower, upper, spec.amplitude, spec.base_period_s)
    lo, hi = np.asarray(lower), np.asarray(upper)
    names = list(arm.joint_names)
    start_ns = round(spec.start_s * 1e9)
    dt = arm.action_dt_s
    events: list[tuple[int, int, str, object]] = []  # (log time, order, topic, message)

    events.append((start_ns, 0, arm.instruction_topic, messages.string(spec.instruction)))
    for at_s, text in spec.instruction_changes:
        events.append((start_ns + round(at_s * 1e9), 0, arm.instruction_topic, messages.string(text)))

    for k in range(int(spec.duration_s * spec.command_hz) + 1):
        t = k / spec.command_hz
        point = messages.joint_trajectory_point(motion.positions(t + dt), motion.velocities(t + dt), dt)
        stamp = start_ns + round(t * 1e9)
        events.append((stamp, 1, arm.joint_trajectory_topic, messages.joint_trajectory(stamp, names, [point])))

    order = names[::-1]  # not the config's order: states are mapped by name
    for k in range(int(spec.duration_s * spec.joint_hz) + 1):
        t = k / spec.joint_hz
        pos = dict(zip(names, motion.positions(t - spec.tracking_lag_s)))
        vel = dict(zip(names, motion.velocities(t - spec.tracking_lag_s)))
        listed = order
        if spec.bad_state_every and k % spec.bad_state_every == spec.bad_state_every - 1:
            if (k // spec.bad_state_every) % 2 == 0:
                pos[names[0]] = float("nan")
            else:
                listed = order[1:]  # the last configured joint is missing
        stamp = start_ns + round(t * 1e9)
        msg = messages.joint_state(stamp, listed, [pos[n] for n in listed], [vel[n] for n in listed])
        events.append((stamp, 2, arm.joint_state_topic, msg))

    for v, cam in enumerate(config.cameras):
        for k in range(int(spec.duration_s * spec.camera_hz) + 1):
            t = k / spec.camera_hz + v * spec.camera_skew_s
            img = arm_image(v, motion.positions(t - spec.tracking_lag_s), lo, hi, spec.height, spec.width)
            stamp = start_ns + round(t * 1e9)
            frame_id = f"{cam.name}_optical"
            if cam.compressed:
                data = messages.encode_jpeg(img) if spec.compressed_format == "jpeg" else messages.encode_png(img)
                msg = messages.compressed_image(stamp, frame_id, data, spec.compressed_format)
            else:
                msg = messages.raw_image(stamp, frame_id, img, "rgb8")
            events.append((stamp, 3 + v, cam.topic, msg))

    events.sort(key=lambda e: (e[0], e[1]))
    counts: dict[str, int] = {}
    with BagWriter(path, fmt, overwrite=overwrite, latched=[arm.instruction_topic]) as bag:
        for stamp, _, topic, msg in tqdm(events, desc="writing arm bag", unit="msg", disable=not progress):
            bag.write(topic, msg, stamp)
            counts[topic] = counts.get(topic, 0) + 1
    return counts
