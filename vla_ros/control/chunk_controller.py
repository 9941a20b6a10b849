"""Control-rate joint commands for a robot arm (control.mode: chunk), taken from action chunks.

The node calls the same four methods as on a vehicle (vla_ros/control/controller.py): `accept`,
`note_input`, `note_state` (instead of note_ego) and `step`, plus two for asynchronous inference:
`wants_inference` (when to start the next one) and `rtc_prefix` (what it is guided by).

Timing. A chunk computed from inputs stamped t0 holds T actions; action i is due at t0 + i*dt
(dt = arm.action_dt_s). A tick at `now` commands the chunk's position at `now`, linearly
interpolated between the two actions around it, with the velocity of that segment
((p[i+1] - p[i]) / dt). A chunk is exhausted once `now` is past its last action: the controller
then holds; it never replays or extrapolates. Commands are in arm.command_joints order (the model's
action i is joint arm.joint_names[i]); everything inside is in arm.joint_names order.

Switching chunks. An accepted chunk is used from the next tick on. How it takes over:
- RTC-guided (arm.rtc.enabled, and the chunk's inference was given `rtc_prefix` of the chunk that
  produced the last command): used as is; guidance made its first actions agree with the old ones.
- otherwise (RTC off, the first chunk, a recovery from a hold, an inference that got no prefix):
  cross-faded linearly from what was being commanded (the old chunk, continuing, or the held
  position) to the new chunk over arm.rtc.blend_steps actions after the last command:
      p(t) = (1 - w) p_old(t) + w p_new(t),  w = (t - t_last_command) / (blend_steps * dt) in [0, 1];
  the commanded velocity is the derivative of p (it includes (p_new - p_old) * dw/dt).
  blend_steps 0 switches at once.
An older chunk (t0 <= the newest accepted t0, within sensing.time_jump_s) never replaces a newer
one (counted as superseded); one from further back means the clock jumped back, and it wins.

Limits (arm.limits, vla_ros/control/joint_limits.py). `accept` rejects, with RejectedOutput counted
by reason: a malformed chunk (`malformed`), NaN/inf in positions or raw actions (`not_finite`),
a position outside [min, max] (`position_limit`), |diff/dt| above max_velocity
(`velocity_limit`), |second diff/dt^2| above max_acceleration (`acceleration_limit`), and a join
that would break a limit: the first command the chunk would produce (at the next tick, blend
included) against the last command, as a velocity over that control period (`join_velocity_limit`)
and a change of that velocity (`join_acceleration_limit`, over max(period, dt); not checked right
after a hold, whose own stop is not a policy motion). Velocities and accelerations get 5% slack.
`step` checks every command the same way (position, velocity and acceleration against the
previous command) and holds instead of publishing one that breaks a limit.

Hold (the safe state). A tick holds, publishing the last commanded position (the measured one
if nothing was commanded yet) with zero velocity, for any of these reasons:
  no_chunk          no chunk accepted yet (or since a clock jump back)
  no_input          no complete camera stack yet;  input_stale: the newest is older than
                    safety.max_input_age_s
  no_state          no joint state yet;  state_stale: the newest is older than arm.max_state_age_s
  chunk_exhausted   now is past the last action of the current chunk (the next one is late)
  command_position_limit / command_velocity_limit / command_acceleration_limit
  chunk_dropped     the chunk being followed was dropped when a hold began (never resumed)
A hold drops the chunk being followed, so no old action is replayed; commands resume when the
inputs are fresh and a newer chunk has been accepted (faded in from the held position).
`step` returns no position at all only before any joint state is known.

Asynchronous inference. `wants_inference(now, latency)` is true when there is no usable chunk or
the current one has less than latency + arm.start_margin_s left (with RTC, plus the execution
horizon: the leftover that guides the next chunk must still cover it). `rtc_prefix(t0, latency)` gives
the inference whose inputs are stamped t0 the current chunk's leftover from t0 on (raw, normalized
actions resampled on the grid t0 + j*dt), the inference delay d = ceil(latency / dt) (actions of
the leftover executed before the new chunk arrives, at most the leftover's length; latency here
runs from t0, the inputs' stamp, to the chunk's acceptance) and the
execution horizon; None with RTC off, no chunk to follow (holding), nothing left, or while a
fade-in is under way at t0 (what executes then is not the chunk's own actions).
Call it once per inference started, RTC on or off: it also records d for the late-chunk metric.

Metrics (`stats`): accepted, superseded, rejected by reason; hold activations and hold ticks by
reason; served ticks; late ticks (held because the chunk ran out before the next arrived:
chunk_exhausted); late-chunk ticks (served by a chunk that arrived after t0 + d*dt, d as planned
by rtc_prefix); and per chunk-to-chunk switch the join: the largest position step and velocity
step (over joints) between the last command from the old chunk and the first from the new, the
max over the run and the last JOIN_HISTORY switches.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

import numpy as np

from vla_ros.config import Config
from vla_ros.control.joint_limits import JointLimits
from vla_ros.control.validation import RejectedOutput
from vla_ros.control.watchdog import Watchdog
from vla_ros.sensors.joint_state_buffer import JointSample

_R = TypeVar("_R")

_LOG = logging.getLogger("vla_ros.control")

# Switches whose join is kept in stats.joins.
JOIN_HISTORY = 64
# Planned inferences remembered (late-chunk metric, RTC guidance); more than are ever in flight.
_PLANS_KEPT = 16
# ceil(latency / dt) without float noise turning 5.000000000000001 into 6.
_CEIL_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class ActionChunk:
    """One policy output for an arm. Action i is due at t0_ns + i * dt_s."""

    t0_ns: int  # stamp of the inputs it was computed from
    dt_s: float  # seconds between actions (arm.action_dt_s)
    positions: np.ndarray  # float64 (T, J): physical joint targets, arm.joint_names order
    raw: np.ndarray  # float (T, A), A >= J: the model's normalized actions (what RTC guides)

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", np.asarray(self.positions, dtype=np.float64))
        object.__setattr__(self, "raw", np.asarray(self.raw))

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def dt_ns(self) -> int:
        return round(self.dt_s * 1e9)

    @property
    def end_ns(self) -> int:
        """When the last action is due."""
        return self.t0_ns + (len(self.positions) - 1) * self.dt_ns


@dataclass(frozen=True, eq=False)
class RtcPrefix:
    """What the next inference is guided by (the lead's runtime turns it into its guide)."""

    t0_ns: int  # stamp of the new inference's inputs: leftover[j] is due at t0_ns + j * dt_s
    source_t0_ns: int  # t0 of the chunk the leftover comes from
    dt_s: float
    leftover: np.ndarray  # (T_left, A) raw actions of that chunk from t0 on, in raw's dtype
    inference_delay: int  # d: leftover actions executed before the new chunk arrives (<= T_left)
    execution_horizon: int  # arm.rtc.execution_horizon


@dataclass(frozen=True, eq=False)
class ChunkStep:
    """What to publish at one control tick."""

    positions: np.ndarray | None  # (J,) arm.command_joints order; None only before any joint state
    velocities: np.ndarray | None  # (J,) same order; zeros while holding
    stamp_ns: int
    hold: bool
    reasons: tuple[str, ...]  # why it holds; empty when following a chunk
    chunk_t0_ns: int | None = None  # t0 of the chunk it was taken from (None while holding)
    # (J,) the position due one control period later (the held one while holding): what a
    # trajectory controller, which reaches a point at its time_from_start, is sent
    next_positions: np.ndarray | None = None


@dataclass(frozen=True)
class JoinStep:
    """The step between the last command from one chunk and the first from the next."""

    stamp_ns: int
    from_t0_ns: int
    to_t0_ns: int
    position_step: float  # max over joints |p_first_new - p_last_old|
    velocity_step: float  # max over joints |v_first_new - v_last_old|
    blended: bool  # faded in (not RTC-guided)


@dataclass
class ChunkStats:
    accepted: int = 0
    superseded: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    served_steps: int = 0
    hold_steps: int = 0
    hold_activations: dict[str, int] = field(default_factory=dict)
    hold_ticks: dict[str, int] = field(default_factory=dict)
    late_ticks: int = 0  # held because the chunk ran out before the next one arrived
    late_chunk_ticks: int = 0  # served by a chunk that arrived after its planned delay
    switches: int = 0
    max_join_position_step: float = 0.0
    max_join_velocity_step: float = 0.0
    joins: deque = field(default_factory=lambda: deque(maxlen=JOIN_HISTORY))
    bad_states: int = 0  # note_state calls ignored (names missing, NaN)
    # inferences run without the RTC guide because the last guided chunk was refused (the fade
    # joins the next one instead of holding until a guided one passes)
    rtc_fallbacks: int = 0


def _count(table: dict[str, int], key: str) -> None:
    table[key] = table.get(key, 0) + 1


def _chunk_at(chunk: ActionChunk, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Position (linear between actions) and velocity (the segment's slope) at t; before the
    first action its position at rest, after the last one the last position at rest."""
    p = chunk.positions
    dt_ns = chunk.dt_ns
    off = t_ns - chunk.t0_ns
    last = len(p) - 1
    if off < 0 or last == 0:
        return p[0], np.zeros_like(p[0])
    i = off // dt_ns
    if i >= last:
        if i == last and off == last * dt_ns:  # exactly on the last action: the slope from the left
            return p[last], (p[last] - p[last - 1]) / chunk.dt_s
        return p[last], np.zeros_like(p[last])
    frac = (off - i * dt_ns) / dt_ns
    slope = p[i + 1] - p[i]
    return p[i] + frac * slope, slope / chunk.dt_s


@dataclass(eq=False)
class _Served:
    """A chunk being followed, faded in from what was commanded before it (when blend_from is set)."""

    chunk: ActionChunk
    arrival_ns: int
    planned_delay: int | None  # d of its inference (rtc_prefix), if known
    guided: bool
    blend_from: "_Served | np.ndarray | None" = None
    blend_start_ns: int = 0
    blend_window_ns: int = 0

    @property
    def end_ns(self) -> int:
        return self.chunk.end_ns

    def blending(self, t_ns: int) -> bool:
        return self.blend_from is not None and t_ns < self.blend_start_ns + self.blend_window_ns

    def at(self, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        pos, vel = _chunk_at(self.chunk, t_ns)
        if not self.blending(t_ns):
            return pos, vel
        if isinstance(self.blend_from, np.ndarray):
            old_pos, old_vel = self.blend_from, np.zeros_like(pos)
        else:
            old_pos, old_vel = self.blend_from.at(t_ns)  # type: ignore[union-attr]
        w = min(max((t_ns - self.blend_start_ns) / self.blend_window_ns, 0.0), 1.0)
        rate = 1e9 / self.blend_window_ns  # dw/dt
        return (1.0 - w) * old_pos + w * pos, (1.0 - w) * old_vel + w * vel + rate * (pos - old_pos)


def _serialized(method: Callable[..., _R]) -> Callable[..., _R]:
    """The inference thread (accept, rtc_prefix), the control timer (step, wants_inference) and
    the subscription callbacks (note_state, note_input) call in concurrently: one at a time."""
    @functools.wraps(method)
    def call(self: "ChunkController", *args: Any, **kwargs: Any) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)
    return call


class ChunkController:
    def __init__(self, config: Config) -> None:
        self._lock = threading.RLock()
        arm = config.arm
        self.arm = arm
        self.joint_names = tuple(arm.joint_names)
        self.command_joint_names = tuple(arm.command_joints)
        self._command_index = np.array([self.joint_names.index(n) for n in self.command_joint_names], dtype=np.int64)
        self.limits = JointLimits.from_config(arm)
        self.period_ns = round(1e9 / config.control.hz)
        self.dt_ns = round(arm.action_dt_s * 1e9)
        self._time_jump_ns = round(config.sensing.time_jump_s * 1e9)
        self._max_state_age_ns = round(arm.max_state_age_s * 1e9)
        # Only its input side is used here: a chunk's own age is its actions' due times.
        self.watchdog = Watchdog(config.safety.max_input_age_s, config.safety.max_output_age_s, config.sensing.time_jump_s)
        self.stats = ChunkStats()
        self._state: JointSample | None = None
        self._state_positions: np.ndarray | None = None  # joint_names order
        self._served: _Served | None = None
        self._newest_t0: int | None = None
        self._no_chunk_reason = "no_chunk"
        self._plans: OrderedDict[int, int] = OrderedDict()  # inference t0 -> planned delay d
        self._guides: OrderedDict[int, int] = OrderedDict()  # inference t0 -> t0 of its prefix's chunk
        # The last command (joint_names order) and what produced it.
        self._last_pos: np.ndarray | None = None
        self._last_vel: np.ndarray | None = None
        self._last_fd_vel: np.ndarray | None = None  # (last - previous) / elapsed, served ticks only
        self._last_stamp: int | None = None
        self._last_next: np.ndarray | None = None  # the point sent one period ahead (ChunkStep.next_positions)
        self._unguided_next = False  # the last guided chunk was refused: guide the next inference not
        self._last_source: _Served | None = None  # None: the last tick held (or none yet)
        self._holding = False
        self._hold_reasons: tuple[str, ...] = ()

    # -- inputs ----------------------------------------------------------------------------------

    @_serialized
    def accept(self, chunk: ActionChunk, now_ns: int) -> None:
        """A new chunk; RejectedOutput (counted in stats.rejected) if it must not be followed."""
        try:
            self._validate(chunk)
        except RejectedOutput as exc:
            self._reject(chunk, exc)
        if self._newest_t0 is not None and chunk.t0_ns <= self._newest_t0:
            if self._newest_t0 - chunk.t0_ns < self._time_jump_ns:
                self.stats.superseded += 1
                return  # an older result finishing late never replaces a newer one
            self._forget_history()  # time went backwards (looped bag, simulator reset): it wins
        candidate = self._successor(chunk, now_ns)
        try:
            self._check_join(candidate, now_ns)
        except RejectedOutput as exc:
            self._reject(chunk, exc)
        self._served = candidate
        self._newest_t0 = chunk.t0_ns
        self.stats.accepted += 1

    @_serialized
    def note_input(self, t0_ns: int) -> None:
        """A complete camera stack stamped t0 was assembled."""
        self.watchdog.note_input(t0_ns)

    @_serialized
    def note_state(self, sample: JointSample) -> None:
        """The newest joint state (positions mapped to arm.joint_names by name)."""
        positions = np.asarray(sample.positions, dtype=np.float64).reshape(-1)
        if tuple(sample.joint_names) != self.joint_names:
            index = {n: i for i, n in enumerate(sample.joint_names)}
            if any(n not in index for n in self.joint_names) or len(positions) != len(sample.joint_names):
                self.stats.bad_states += 1
                return
            positions = positions[[index[n] for n in self.joint_names]]
        if positions.shape != (len(self.joint_names),) or not np.all(np.isfinite(positions)):
            self.stats.bad_states += 1
            return
        self._state = sample
        self._state_positions = positions

    @_serialized
    def reset(self) -> None:
        """Forget chunks, plans and timing (the clock jumped back); the hold position is kept."""
        self._forget_history()
        self.watchdog.reset()
        self._state = None

    # -- the control tick ------------------------------------------------------------------------

    @property
    def holding(self) -> bool:
        return self._holding

    @property
    def hold_reasons(self) -> tuple[str, ...]:
        """Why the last tick held (empty when it followed a chunk)."""
        return self._hold_reasons if self._holding else ()

    @_serialized
    def step(self, now_ns: int) -> ChunkStep:
        stats = self.stats
        stats.steps += 1
        if self._last_stamp is not None and now_ns < self._last_stamp - self._time_jump_ns:
            self._forget_history()
        reasons = self._input_reasons(now_ns)
        served = self._served
        if served is None:
            reasons.append(self._no_chunk_reason)
        elif now_ns > served.end_ns:
            reasons.append("chunk_exhausted")
        pos = vel = fd_vel = nxt = None
        if not reasons:
            assert served is not None
            if not served.blending(now_ns):
                served.blend_from = None  # the fade-in is over: let the old chunk go
            pos, vel = served.at(now_ns)
            nxt = served.at(min(now_ns + self.period_ns, served.end_ns))[0]
            problem, fd_vel = self._command_problem(pos, now_ns)
            if problem is None:
                problem = self._ahead_problem(nxt, now_ns)
            if problem is not None:
                reason, detail = problem
                reasons.append(f"command_{reason}")
                _LOG.warning("command from chunk t0=%.3f not sent: %s", served.chunk.t0_ns / 1e9, detail)
        hold = bool(reasons)
        if hold:
            if served is not None:  # never resumed: a later command must come from a newer chunk
                self._no_chunk_reason = "chunk_exhausted" if "chunk_exhausted" in reasons else "chunk_dropped"
                self._served = None
            served = None
            pos = nxt = self._hold_position()
            vel = None if pos is None else np.zeros_like(pos)
            fd_vel = None
            stats.hold_steps += 1
            for r in reasons:
                _count(stats.hold_ticks, r)
            if "chunk_exhausted" in reasons:
                stats.late_ticks += 1
            if not self._holding:
                for r in reasons:
                    _count(stats.hold_activations, r)
                _LOG.warning("holding position (%s)", ", ".join(reasons))
        else:
            assert served is not None and pos is not None and vel is not None
            stats.served_steps += 1
            if self._holding:
                _LOG.info("following chunk t0=%.3f again", served.chunk.t0_ns / 1e9)
            previous = self._last_source
            if previous is not None and previous.chunk is not served.chunk:
                self._record_join(now_ns, previous, served, pos, vel)
            if served.planned_delay is not None and \
                    served.arrival_ns > served.chunk.t0_ns + served.planned_delay * self.dt_ns:
                stats.late_chunk_ticks += 1
        self._holding = hold
        self._hold_reasons = tuple(reasons)
        self._last_source = served
        self._last_fd_vel = fd_vel
        if pos is not None:
            self._last_pos, self._last_vel, self._last_stamp, self._last_next = pos, vel, now_ns, nxt
        idx = self._command_index
        return ChunkStep(
            positions=None if pos is None else pos[idx],
            velocities=None if vel is None else vel[idx],
            stamp_ns=now_ns,
            hold=hold,
            reasons=tuple(reasons),
            chunk_t0_ns=None if served is None else served.chunk.t0_ns,
            next_positions=None if nxt is None else nxt[idx],
        )

    # -- scheduling asynchronous inference -------------------------------------------------------

    @_serialized
    def wants_inference(self, now_ns: int, latency_s: float) -> bool:
        """Start the next inference now: no usable chunk, or less than latency + margin left
        (latency_s: from starting an inference to its chunk being accepted)."""
        served = self._served
        if served is None or now_ns > served.end_ns:
            return True
        left_s = (served.end_ns - now_ns) / 1e9
        # With RTC the next chunk is guided by the current one's leftover beyond the delay, over
        # the execution horizon: start early enough that the leftover still covers it (a shorter
        # one ends the guidance early and the new chunk jumps to its own path inside the horizon).
        guided_s = self.arm.rtc.execution_horizon * self.arm.action_dt_s if self.arm.rtc.enabled else 0.0
        return left_s < max(latency_s, 0.0) + self.arm.start_margin_s + guided_s

    @_serialized
    def rtc_prefix(self, t0_ns: int, latency_s: float) -> RtcPrefix | None:
        """The guide of an inference on inputs stamped t0 whose chunk is expected to be accepted
        latency_s after t0 (measured from the inputs' stamp, not from the start of the run: the
        new chunk's actions are due from t0); records the planned delay either way."""
        delay = max(math.ceil(max(latency_s, 0.0) / self.arm.action_dt_s - _CEIL_EPS), 0)
        _remember(self._plans, t0_ns, delay)
        served = self._served
        if not self.arm.rtc.enabled or served is None or t0_ns > served.end_ns or served.blending(t0_ns):
            return None
        if self._unguided_next:
            self._unguided_next = False
            self.stats.rtc_fallbacks += 1
            return None
        chunk = served.chunk
        left = (served.end_ns - t0_ns) // self.dt_ns + 1
        # Time of leftover action j, in the chunk's own action index: whole part and fraction.
        offsets = np.maximum(t0_ns - chunk.t0_ns + np.arange(left, dtype=np.int64) * self.dt_ns, 0)
        lo = np.minimum(offsets // chunk.dt_ns, len(chunk) - 1)
        hi = np.minimum(lo + 1, len(chunk) - 1)
        frac = ((offsets - lo * chunk.dt_ns) / chunk.dt_ns)[:, None]
        raw = chunk.raw
        leftover = (raw[lo] * (1.0 - frac) + raw[hi] * frac).astype(raw.dtype, copy=False)
        _remember(self._guides, t0_ns, chunk.t0_ns)
        return RtcPrefix(t0_ns, chunk.t0_ns, self.arm.action_dt_s, leftover, min(delay, int(left)),
                         self.arm.rtc.execution_horizon)

    # -- internals -------------------------------------------------------------------------------

    def _reject(self, chunk: ActionChunk, exc: RejectedOutput) -> NoReturn:
        _count(self.stats.rejected, exc.reason)
        if chunk.t0_ns in self._guides:
            # Guidance pinned its first actions to the old chunk and then it turned to its own path
            # too steeply (a model whose path is far from the one executing): the next inference
            # runs unguided and is faded in, rather than holding until a guided chunk passes.
            self._unguided_next = True
        _LOG.warning("action chunk for t0=%.3f rejected: %s", chunk.t0_ns / 1e9, exc)
        raise exc

    def _validate(self, chunk: ActionChunk) -> None:
        pos, raw = chunk.positions, chunk.raw
        joints = len(self.joint_names)
        if pos.ndim != 2 or pos.shape[0] < 1 or pos.shape[1] != joints:
            raise RejectedOutput("malformed", f"positions of shape {pos.shape}, expected (T >= 1, {joints})")
        if raw.ndim != 2 or raw.shape[0] != pos.shape[0] or raw.shape[1] < joints or \
                not np.issubdtype(raw.dtype, np.floating):
            raise RejectedOutput("malformed", f"raw actions of shape {raw.shape} ({raw.dtype}), expected "
                                              f"({pos.shape[0]}, >= {joints}) floating point")
        if not (math.isfinite(chunk.dt_s) and chunk.dt_s > 0 and chunk.dt_ns > 0):
            raise RejectedOutput("malformed", f"dt_s = {chunk.dt_s}")
        if not np.all(np.isfinite(pos)) or not np.all(np.isfinite(raw)):
            raise RejectedOutput("not_finite", "positions or raw actions contain NaN or inf")
        self.limits.check_chunk(pos, chunk.dt_s)

    def _successor(self, chunk: ActionChunk, now_ns: int) -> _Served:
        """How `chunk` would take over from what is commanded now."""
        source = self._last_source
        guided = (self.arm.rtc.enabled and source is not None
                  and self._guides.get(chunk.t0_ns) == source.chunk.t0_ns)
        served = _Served(chunk, now_ns, self._plans.get(chunk.t0_ns), guided)
        steps = self.arm.rtc.blend_steps
        if not guided and steps > 0:
            blend_from = source if source is not None else self._hold_position()
            if blend_from is not None:
                served.blend_from = blend_from
                served.blend_start_ns = self._last_stamp if self._last_stamp is not None else now_ns
                served.blend_window_ns = steps * self.dt_ns
                if isinstance(blend_from, np.ndarray):
                    served.blend_window_ns = max(served.blend_window_ns, self._approach_ns(chunk, blend_from, served.blend_start_ns))
        return served

    def _approach_ns(self, chunk: ActionChunk, held: np.ndarray, start_ns: int) -> int:
        """From standstill (a hold, the first chunk) the fade lasts long enough to close the gap to
        the chunk however far it starts from the arm (a policy's first action is rarely exactly
        where the arm stands): its own speed, gap / window, stays within half of each joint's
        velocity limit and is a velocity step (at its start and end) within half the
        acceleration limit over one control period."""
        gap = np.abs(_chunk_at(chunk, start_ns)[0] - held)
        speed = np.minimum(0.5 * self.limits.max_velocity, 0.5 * self.limits.max_acceleration * self.period_ns / 1e9)
        return int(math.ceil(float(np.max(gap / speed)) * 1e9))

    def _check_join(self, candidate: _Served, now_ns: int) -> None:
        """The first command `candidate` would give (at the next tick) against the last one."""
        t1 = now_ns if self._last_stamp is None else max(now_ns, self._last_stamp + self.period_ns)
        if t1 > candidate.end_ns:
            return  # exhausted on arrival: step() holds (chunk_exhausted)
        pos, _ = candidate.at(t1)
        problem, _ = self._command_problem(pos, t1)
        if problem is not None:
            raise RejectedOutput(f"join_{problem[0]}", problem[1])

    def _command_problem(self, pos: np.ndarray, now_ns: int) -> tuple[tuple[str, str] | None, np.ndarray | None]:
        """(limit, detail) for a command that breaks a limit, else None; and its finite-difference
        velocity against the previous command (None without one)."""
        detail = self.limits.position_violation(pos)
        if detail:
            return ("position_limit", detail), None
        # The first command (or the first since a clock jump): against the hold position (the
        # measured one if nothing was commanded) one control period before.
        ref = self._hold_position()
        ref_ns = self._last_stamp if self._last_stamp is not None else now_ns - self.period_ns
        if ref is None or now_ns <= ref_ns:
            return None, None
        elapsed_s = (now_ns - ref_ns) / 1e9
        fd_vel = (pos - ref) / elapsed_s
        detail = self.limits.velocity_violation(fd_vel)
        if detail:
            return ("velocity_limit", f"{detail} (from the previous command)"), fd_vel
        if self._last_fd_vel is not None:  # not right after a hold or the first command
            accel = (fd_vel - self._last_fd_vel) / max(elapsed_s, self.arm.action_dt_s)
            detail = self.limits.acceleration_violation(accel)
            if detail:
                return ("acceleration_limit", f"{detail} (from the previous commands)"), fd_vel
        return None, fd_vel

    def _ahead_problem(self, nxt: np.ndarray, now_ns: int) -> tuple[str, str] | None:
        """The point a trajectory controller is sent (the position due one period later) breaks
        a position limit, or moves from the last one sent faster than the velocity limit."""
        detail = self.limits.position_violation(nxt)
        if detail:
            return "position_limit", f"{detail} (one period ahead)"
        if self._last_next is None or self._last_stamp is None or now_ns <= self._last_stamp:
            return None
        detail = self.limits.velocity_violation((nxt - self._last_next) / ((now_ns - self._last_stamp) / 1e9))
        return None if detail is None else ("velocity_limit", f"{detail} (one period ahead, from the previous point)")

    def _input_reasons(self, now_ns: int) -> list[str]:
        reasons = []
        if self._state is None:
            reasons.append("no_state")
        else:
            age = now_ns - self._state.stamp_ns
            if age > self._max_state_age_ns or age < -self._time_jump_ns:
                reasons.append("state_stale")
        reasons.extend(r for r in self.watchdog.check(now_ns).reasons if r in ("no_input", "input_stale"))
        return reasons

    def _hold_position(self) -> np.ndarray | None:
        return self._last_pos if self._last_pos is not None else self._state_positions

    def _record_join(self, now_ns: int, old: _Served, new: _Served, pos: np.ndarray, vel: np.ndarray) -> None:
        assert self._last_pos is not None and self._last_vel is not None
        step = JoinStep(now_ns, old.chunk.t0_ns, new.chunk.t0_ns, float(np.max(np.abs(pos - self._last_pos))),
                        float(np.max(np.abs(vel - self._last_vel))), blended=new.blend_window_ns > 0)
        stats = self.stats
        stats.switches += 1
        stats.max_join_position_step = max(stats.max_join_position_step, step.position_step)
        stats.max_join_velocity_step = max(stats.max_join_velocity_step, step.velocity_step)
        stats.joins.append(step)

    def _forget_history(self) -> None:
        self._served = None
        self._newest_t0 = None
        self._no_chunk_reason = "no_chunk"
        self._plans.clear()
        self._guides.clear()
        self._last_fd_vel = None
        self._last_stamp = None
        self._last_source = None


def _remember(table: OrderedDict, key: int, value: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _PLANS_KEPT:
        table.popitem(last=False)
