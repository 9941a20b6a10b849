"""The arm's control layer: joint commands at control rate from action chunks (time driven explicitly)."""
import numpy as np
import pytest

from vla_ros.config import Config
from vla_ros.control.chunk_controller import ActionChunk, ChunkController
from vla_ros.control.validation import RejectedOutput
from vla_ros.sensors.joint_state_buffer import JointSample

S = 1_000_000_000
MS = 1_000_000
T0 = 100 * S
DT = 20 * MS  # arm.action_dt_s and the control period (50 Hz)
JOINTS = ("shoulder", "elbow", "wrist")
VEL = np.array([0.5, -0.25, 1.0])  # rad/s of the ramps below


def make_config(rtc=True, blend=5, command=(), max_acceleration=60.0, **limits):
    lim = {"position_min": [-3.0], "position_max": [3.0], "max_velocity": [3.0],
           "max_acceleration": [max_acceleration], **limits}
    return Config().replace(control__mode="chunk", arm={
        "joint_names": list(JOINTS), "command_joint_names": list(command), "action_dt_s": 0.02,
        "start_margin_s": 0.05, "limits": lim,
        "rtc": {"enabled": rtc, "blend_steps": blend, "execution_horizon": 10}})


def ramp(t0, start=(0.0, 0.0, 0.0), vel=VEL, n=50):
    """Positions moving at constant velocity from `start` at t0; raw = an affine normalization, padded to 6."""
    positions = np.asarray(start, dtype=np.float64) + np.arange(n)[:, None] * 0.02 * np.asarray(vel, dtype=np.float64)
    raw = np.zeros((n, 6), dtype=np.float32)
    raw[:, :3] = (positions - 0.1) / 2.0
    return ActionChunk(t0, 0.02, positions, raw)


def at(chunk, t_ns):
    """The chunk's position at t, linear between actions (the expected command)."""
    x = (t_ns - chunk.t0_ns) / DT
    i = min(int(x), len(chunk) - 2)
    return chunk.positions[i] + (x - i) * (chunk.positions[i + 1] - chunk.positions[i])


class Rig:
    """The node's side: camera stacks and joint states stay fresh unless told otherwise."""

    def __init__(self, cfg, measured=(0.0, 0.0, 0.0)):
        self.ctrl = ChunkController(cfg)
        self.measured = np.asarray(measured, dtype=np.float64)

    def tick(self, now, inputs=True, state=True):
        if inputs:
            self.ctrl.note_input(now - 5 * MS)
        if state:
            self.ctrl.note_state(JointSample(now - 2 * MS, JOINTS, self.measured.copy(), None))
        return self.ctrl.step(now)


def test_commands_interpolate_the_chunk_at_their_stamps():
    rig = Rig(make_config(blend=0))
    chunk = ramp(T0)
    rig.ctrl.accept(chunk, T0 + 5 * MS)
    for now in (T0 + 10 * MS, T0 + 30 * MS, T0 + 40 * MS, T0 + 333 * MS):
        step = rig.tick(now)
        assert not step.hold and step.reasons == () and step.stamp_ns == now and step.chunk_t0_ns == T0
        np.testing.assert_allclose(step.positions, VEL * (now - T0) / S, atol=1e-12)
        np.testing.assert_allclose(step.velocities, VEL, atol=1e-12)
    # A kink: action 10 onwards reverses the wrist; the tick between 10 and 11 follows the new slope.
    pos = chunk.positions.copy()
    pos[11:, 2] = pos[10, 2] - (np.arange(1, 40) * 0.02 * 1.0)
    bent = ActionChunk(T0 + 1 * MS, 0.02, pos, chunk.raw)
    rig2 = Rig(make_config(blend=0, max_acceleration=500.0))
    rig2.ctrl.accept(bent, T0 + 5 * MS)
    for k in range(1, 12):
        rig2.tick(T0 + k * DT)
    step = rig2.tick(T0 + 1 * MS + 10 * DT + 5 * MS)  # a quarter into segment 10 -> 11
    assert step.positions[2] == pytest.approx(pos[10, 2] - 0.25 * 0.02, abs=1e-12)
    assert step.velocities[2] == pytest.approx(-1.0)


def test_next_position_is_the_chunk_one_control_period_ahead_and_the_hold_position_while_holding():
    """What a trajectory controller is sent: the point it reaches one period later."""
    rig = Rig(make_config(blend=0, max_acceleration=500.0))
    pos = ramp(T0).positions.copy()
    pos[11:, 0] = pos[10, 0] - np.arange(1, 40) * 0.02 * 0.5  # a kink: a tick before it must not extrapolate across it
    chunk = ActionChunk(T0, 0.02, pos, ramp(T0).raw)
    rig.ctrl.accept(chunk, T0 + 5 * MS)
    for now in (T0 + 10 * MS, T0 + 190 * MS, T0 + 205 * MS, T0 + 210 * MS):
        step = rig.tick(now)
        np.testing.assert_allclose(step.next_positions, at(chunk, now + DT), atol=1e-12)
    end = T0 + 49 * DT
    step = rig.tick(end - 5 * MS)  # the period ahead lies past the last action: its position
    np.testing.assert_allclose(step.next_positions, chunk.positions[-1], atol=1e-12)
    held = rig.tick(end + 50 * MS)  # exhausted: hold
    assert held.hold and np.array_equal(held.next_positions, held.positions)


def test_commands_come_in_command_joint_order():
    rig = Rig(make_config(blend=0, command=("wrist", "shoulder")), measured=(0.1, 0.2, 0.3))
    assert rig.ctrl.command_joint_names == ("wrist", "shoulder")
    held = rig.tick(T0)  # nothing to follow yet: the measured position, reordered
    assert held.hold and list(held.positions) == [0.3, 0.1] and list(held.velocities) == [0.0, 0.0]
    rig.ctrl.accept(ramp(T0, start=(0.1, 0.2, 0.3)), T0 + 5 * MS)
    step = rig.tick(T0 + DT)
    np.testing.assert_allclose(step.positions, [0.3 + 0.02 * VEL[2], 0.1 + 0.02 * VEL[0]], atol=1e-12)
    np.testing.assert_allclose(step.velocities, [VEL[2], VEL[0]])


def test_each_limit_rejects_the_chunk_and_is_counted():
    rig = Rig(make_config(blend=0))
    good = ramp(T0)
    rig.ctrl.accept(good, T0 + 5 * MS)
    for k in range(1, 6):
        rig.tick(T0 + k * DT)
    now = T0 + 5 * DT + 5 * MS
    t0 = T0 + 5 * DT
    cases = {}
    cases["position_limit"] = ramp(t0, start=(2.9, 0.0, 0.0), vel=(1.0, 0.0, 0.0))
    cases["velocity_limit"] = ramp(t0, start=good.positions[5], vel=(0.5, -0.25, 4.0), n=20)
    kink = ramp(t0, start=good.positions[5]).positions.copy()
    kink[20:, 0] += np.arange(1, 31) * 0.02 * 2.0  # +2 rad/s from one action to the next: 100 rad/s^2
    cases["acceleration_limit"] = ActionChunk(t0, 0.02, kink, ramp(t0).raw)
    # Consistent on its own, but 0.5 rad away from what is commanded: 25 rad/s over one period.
    cases["join_velocity_limit"] = ramp(t0, start=good.positions[5] + np.array([0.0, 0.5, 0.0]))
    # At the right place, but the wrist reverses from +1 to -1 rad/s at once: 100 rad/s^2.
    cases["join_acceleration_limit"] = ramp(t0, start=good.positions[5], vel=(0.5, -0.25, -1.0))
    nan = good.positions.copy()
    nan[7, 1] = np.nan
    cases["not_finite"] = ActionChunk(t0, 0.02, nan, good.raw)
    cases["malformed"] = ActionChunk(t0, 0.02, good.positions[:, :2], good.raw)
    for reason, chunk in cases.items():
        with pytest.raises(RejectedOutput) as info:
            rig.ctrl.accept(chunk, now)
        assert info.value.reason == reason, info.value
    raw_nan = good.raw.copy()
    raw_nan[3, 5] = np.inf  # a padded column of the raw actions (what RTC would be guided by)
    with pytest.raises(RejectedOutput, match="not_finite"):
        rig.ctrl.accept(ActionChunk(t0, 0.02, ramp(t0, start=good.positions[5]).positions, raw_nan), now)
    assert rig.ctrl.stats.rejected == {r: (2 if r == "not_finite" else 1) for r in cases}
    assert rig.ctrl.stats.accepted == 1
    # None of them replaced the chunk being followed.
    step = rig.tick(T0 + 6 * DT)
    assert not step.hold and step.chunk_t0_ns == T0
    np.testing.assert_allclose(step.positions, good.positions[6], atol=1e-12)
    # The limits are per joint: the wrist may go 4 rad/s when configured so.
    rig2 = Rig(make_config(blend=0, max_velocity=[3.0, 3.0, 4.5]))
    rig2.ctrl.accept(ramp(T0, vel=(0.5, -0.25, 4.0), n=20), T0 + 5 * MS)
    assert rig2.ctrl.stats.accepted == 1


def test_holds_before_anything_is_known_and_then_at_the_measured_position():
    rig = Rig(make_config(), measured=(0.4, -0.2, 1.0))
    step = rig.tick(T0, inputs=False, state=False)
    assert step.hold and step.positions is None and step.velocities is None
    assert set(step.reasons) == {"no_state", "no_input", "no_chunk"}
    step = rig.tick(T0 + DT)
    assert step.hold and step.reasons == ("no_chunk",) and rig.ctrl.holding and rig.ctrl.hold_reasons == ("no_chunk",)
    np.testing.assert_array_equal(step.positions, [0.4, -0.2, 1.0])
    np.testing.assert_array_equal(step.velocities, 0.0)
    stats = rig.ctrl.stats
    assert stats.hold_activations == {"no_state": 1, "no_input": 1, "no_chunk": 1}  # one activation
    assert stats.hold_ticks == {"no_state": 1, "no_input": 1, "no_chunk": 2} and stats.hold_steps == 2


def test_a_first_chunk_far_from_the_arm_is_approached_within_the_limits():
    """A policy's first action 0.6 rad from where the arm stands: a 5-action fade would ask for
    6 rad/s (limit 3) and be refused; the approach is slowed to stay within the limits instead."""
    rig = Rig(make_config(blend=5), measured=(0.0, 0.0, 0.0))
    rig.tick(T0)  # holding at the measured position
    chunk = ramp(T0, start=(0.6, -0.3, 0.2), vel=(0.0, 0.0, 0.0), n=200)  # 4 s standing 0.6 rad away
    rig.ctrl.accept(chunk, T0 + 5 * MS)
    steps = [rig.tick(T0 + k * DT) for k in range(1, 150)]
    assert not any(s.hold for s in steps), [s.reasons for s in steps if s.hold][:3]
    pos = np.array([np.zeros(3)] + [s.positions for s in steps])
    vel = np.diff(pos, axis=0) / 0.02
    assert np.abs(vel).max() <= 3.0 * 1.05 and np.abs(np.diff(vel, axis=0)).max() / 0.02 <= 60.0 * 1.05
    np.testing.assert_allclose(steps[-1].positions, chunk.positions[0], atol=1e-9)  # arrived
    assert rig.ctrl.stats.rejected == {}


def _following(cfg=None):
    rig = Rig(cfg or make_config(blend=0))
    rig.ctrl.accept(ramp(T0), T0 + 5 * MS)
    for k in range(1, 11):
        step = rig.tick(T0 + k * DT)
        assert not step.hold
    return rig, step


@pytest.mark.parametrize("lost, reason", [("inputs", "input_stale"), ("state", "state_stale")])
def test_stale_inputs_hold_the_last_command_and_recover_only_with_a_fresh_chunk(lost, reason):
    rig, last = _following(make_config(blend=5))
    limit = 0.5 if lost == "inputs" else 0.1  # safety.max_input_age_s, arm.max_state_age_s
    last_fresh = T0 + 10 * DT
    k = 11
    while True:  # inputs of one kind stop; ticks go on
        now = T0 + k * DT
        step = rig.tick(now, inputs=lost != "inputs", state=lost != "state")
        stale = now - (last_fresh - (5 if lost == "inputs" else 2) * MS) > limit * S
        assert step.hold == stale
        if stale:
            break
        last = step
        k += 1
    assert reason in step.reasons and step.chunk_t0_ns is None
    np.testing.assert_array_equal(step.positions, last.positions)  # the last commanded position
    np.testing.assert_array_equal(step.velocities, 0.0)
    # Inputs return: the old chunk still has actions left, but it is not resumed.
    for k in range(k + 1, k + 4):
        step = rig.tick(T0 + k * DT)
        assert step.hold and step.reasons == ("chunk_dropped",)
        np.testing.assert_array_equal(step.positions, last.positions)
    assert rig.ctrl.wants_inference(T0 + k * DT, 0.1)
    # A fresh chunk from where the arm is: faded in from the held position, then followed as is.
    now = T0 + k * DT
    fresh = ramp(now - 60 * MS, start=last.positions, vel=VEL / 4)
    rig.ctrl.accept(fresh, now + 5 * MS)
    first = rig.tick(now + DT)
    assert not first.hold and first.chunk_t0_ns == fresh.t0_ns
    assert not rig.ctrl.holding and rig.ctrl.hold_reasons == ()
    w = 1 / 5
    np.testing.assert_allclose(first.positions, (1 - w) * last.positions + w * at(fresh, now + DT), atol=1e-12)
    for j in range(2, 8):
        step = rig.tick(now + j * DT)
    np.testing.assert_allclose(step.positions, at(fresh, now + 7 * DT), atol=1e-12)
    assert rig.ctrl.stats.hold_activations == {reason: 1}
    assert rig.ctrl.stats.hold_ticks == {reason: 1, "chunk_dropped": 3}


def test_exhausted_chunk_holds_and_is_never_replayed():
    rig = Rig(make_config(blend=0))
    short = ramp(T0, n=10)  # last action due at T0 + 180 ms
    rig.ctrl.accept(short, T0 + 5 * MS)
    for k in range(1, 10):
        step = rig.tick(T0 + k * DT)
    assert not step.hold
    np.testing.assert_allclose(step.positions, short.positions[9], atol=1e-12)
    for k in range(10, 30):
        step = rig.tick(T0 + k * DT)
        assert step.hold and step.reasons == ("chunk_exhausted",)
        np.testing.assert_array_equal(step.positions, short.positions[9])
        np.testing.assert_array_equal(step.velocities, 0.0)
    stats = rig.ctrl.stats
    assert stats.late_ticks == 20 and stats.hold_activations == {"chunk_exhausted": 1}
    # The same result delivered again (a duplicate, or a retry finishing late) is not replayed.
    rig.ctrl.accept(short, T0 + 30 * DT)
    assert stats.superseded == 1
    assert rig.tick(T0 + 31 * DT).hold
    # A newer chunk recovers.
    rig.ctrl.accept(ramp(T0 + 31 * DT, start=short.positions[9]), T0 + 31 * DT + 5 * MS)
    step = rig.tick(T0 + 32 * DT)
    assert not step.hold and step.chunk_t0_ns == T0 + 31 * DT


def test_a_command_the_arm_cannot_follow_holds():
    rig = Rig(make_config(blend=0))
    rig.ctrl.accept(ramp(T0), T0 + 5 * MS)
    rig.measured = np.array([0.0, 1.0, 0.0])  # the arm was pushed 1 rad away before the first command
    step = rig.tick(T0 + DT)
    assert step.hold and step.reasons == ("command_velocity_limit",)
    np.testing.assert_array_equal(step.positions, [0.0, 1.0, 0.0])  # where it is, not where the chunk is
    assert rig.tick(T0 + 2 * DT).reasons == ("chunk_dropped",)
    assert rig.ctrl.stats.hold_activations == {"command_velocity_limit": 1}


def test_a_recovery_too_abrupt_for_the_acceleration_limit_holds():
    rig, _ = _following(make_config(blend=5))
    k = 11
    while not (held := rig.tick(T0 + k * DT, state=False)).hold:  # the joint states stop
        k += 1
    # Computed 60 ms before it arrives, already moving at full speed: the 0.1 s fade from the
    # held position must catch up, and its last step decelerates back to the chunk's speed at
    # 70 rad/s^2 (limit 60): that command is not sent.
    now = T0 + k * DT
    fresh = ramp(now - 60 * MS, start=held.positions)
    rig.ctrl.accept(fresh, now + 5 * MS)
    steps = [rig.tick(now + j * DT) for j in range(1, 8)]
    assert [s.hold for s in steps] == [False] * 5 + [True] * 2
    assert steps[5].reasons == ("command_acceleration_limit",) and steps[6].reasons == ("chunk_dropped",)
    np.testing.assert_array_equal(steps[5].positions, steps[4].positions)
    assert rig.ctrl.stats.hold_activations["command_acceleration_limit"] == 1


def test_an_older_result_never_replaces_a_newer_one():
    rig = Rig(make_config(blend=0))
    newer = ramp(T0 + 100 * MS)
    rig.ctrl.accept(newer, T0 + 120 * MS)
    rig.tick(T0 + 140 * MS)
    rig.ctrl.accept(ramp(T0, start=(0.5, 0.5, 0.5)), T0 + 150 * MS)  # finished late
    assert rig.ctrl.stats.superseded == 1 and rig.ctrl.stats.accepted == 1
    step = rig.tick(T0 + 160 * MS)
    assert step.chunk_t0_ns == newer.t0_ns
    np.testing.assert_allclose(step.positions, at(newer, T0 + 160 * MS), atol=1e-12)
    # Far further back is the clock jumping back (a looped bag): that one wins.
    back = T0 - 30 * S
    rig.ctrl.accept(ramp(back), back + 5 * MS)
    assert rig.ctrl.stats.accepted == 2
    assert rig.tick(back + DT).chunk_t0_ns == back


def _switch_steps(cfg, jump):
    """Follow A, switch to B (A shifted by `jump` rad on the elbow) unguided: the commanded path."""
    rig = Rig(cfg)
    a = ramp(T0)
    rig.ctrl.accept(a, T0 + 5 * MS)
    path = [rig.tick(T0 + k * DT) for k in range(1, 16)]
    b = ramp(T0 + 10 * DT, start=a.positions[10] + np.array([0.0, jump, 0.0]))
    rig.ctrl.accept(b, T0 + 15 * DT + 5 * MS)
    path += [rig.tick(T0 + k * DT) for k in range(16, 30)]
    assert all(not s.hold for s in path)
    return rig, a, b, np.array([s.positions for s in path])


def test_blend_smooths_a_jump_between_chunks():
    # A high acceleration limit so that the unblended switch is not refused.
    sharp, a, b, sharp_path = _switch_steps(make_config(rtc=False, blend=0, max_acceleration=1e4), 0.055)
    smooth, _, _, smooth_path = _switch_steps(make_config(rtc=False, blend=5, max_acceleration=1e4), 0.055)
    (j_sharp,), (j_smooth,) = sharp.ctrl.stats.joins, smooth.ctrl.stats.joins
    assert j_sharp.position_step == pytest.approx(0.055 - 0.02 * 0.25)  # the elbow: jump less its motion
    assert j_smooth.blended and not j_sharp.blended
    # Faded in, the largest step is the wrist's own motion (1 rad/s over 20 ms), not the jump.
    assert j_smooth.position_step == pytest.approx(0.02) and j_smooth.position_step < j_sharp.position_step / 2
    assert np.max(np.abs(np.diff(smooth_path, axis=0))) < np.max(np.abs(np.diff(sharp_path, axis=0))) / 2
    # The fade: one fifth of the way at the first tick, all the way after 5 actions.
    t = T0 + 16 * DT
    np.testing.assert_allclose(smooth_path[15], 0.8 * at(a, t) + 0.2 * at(b, t), atol=1e-12)
    np.testing.assert_allclose(smooth_path[20:], sharp_path[20:], atol=1e-12)
    # Its velocity is the fade's derivative: B's slope plus the jump over the 0.1 s window.
    assert smooth.ctrl.stats.joins[0].velocity_step == pytest.approx(0.055 / 0.1)


def test_rtc_guided_chunks_are_used_as_is_and_the_join_is_measured():
    rig = Rig(make_config(rtc=True, blend=5, max_acceleration=1e4))
    a = ramp(T0)
    rig.ctrl.accept(a, T0 + 5 * MS)  # the first chunk: faded in from the measured (equal) position
    for k in range(1, 30):
        rig.tick(T0 + k * DT)
    t0 = T0 + 30 * DT
    prefix = rig.ctrl.rtc_prefix(t0, 0.1)
    assert prefix is not None and prefix.inference_delay == 5
    # The guided result: agrees on shoulder and wrist, 0.01 rad off on the elbow, whose slope differs.
    b = ramp(t0, start=a.positions[30] + np.array([0.0, 0.01, 0.0]), vel=(0.5, 0.25, 1.0))
    steps = [rig.tick(t0 + k * DT) for k in range(0, 4)]
    rig.ctrl.accept(b, t0 + 70 * MS)  # before its planned 100 ms
    steps += [rig.tick(t0 + k * DT) for k in range(4, 8)]
    assert [s.chunk_t0_ns for s in steps] == [T0] * 4 + [t0] * 4
    for s in steps[4:]:
        np.testing.assert_allclose(s.positions, at(b, s.stamp_ns), atol=1e-12)  # no fade
    (join,) = rig.ctrl.stats.joins
    expected = np.abs(at(b, t0 + 4 * DT) - at(a, t0 + 3 * DT))
    assert not join.blended and (join.from_t0_ns, join.to_t0_ns) == (T0, t0)
    assert join.position_step == pytest.approx(expected.max())
    assert join.velocity_step == pytest.approx(0.5)
    assert rig.ctrl.stats.max_join_position_step == join.position_step and rig.ctrl.stats.switches == 1
    assert rig.ctrl.stats.late_chunk_ticks == 0
    # A chunk whose inference got no prefix is faded in even with RTC on.
    c = ramp(t0 + 5 * DT, start=at(b, t0 + 5 * DT))
    rig.ctrl.accept(c, t0 + 8 * DT + 5 * MS)
    rig.tick(t0 + 9 * DT)
    assert rig.ctrl.stats.joins[-1].blended


def test_a_refused_guided_chunk_makes_the_next_inference_unguided_and_faded_in():
    """A guided chunk that turns from the old path to its own too steeply is refused; the next
    inference then runs without the guide (its chunk fades in) instead of holding until a guided
    one passes; the one after is guided again."""
    rig = Rig(make_config(rtc=True, blend=5, max_acceleration=1e4))
    a = ramp(T0)
    rig.ctrl.accept(a, T0 + 5 * MS)
    for k in range(1, 30):
        rig.tick(T0 + k * DT)
    t0 = T0 + 30 * DT
    assert rig.ctrl.rtc_prefix(t0, 0.1) is not None
    steep = ramp(t0, start=a.positions[30]).positions
    steep[6:] += 0.5  # guided for 5 actions, then a 0.5 rad step: 25 rad/s
    with pytest.raises(RejectedOutput, match="velocity_limit"):
        rig.ctrl.accept(ActionChunk(t0, 0.02, steep, ramp(t0).raw), t0 + 70 * MS)
    t1 = t0 + 5 * DT
    assert rig.ctrl.rtc_prefix(t1, 0.1) is None and rig.ctrl.stats.rtc_fallbacks == 1  # unguided
    for k in range(1, 9):
        rig.tick(t0 + k * DT)
    rig.ctrl.accept(ramp(t1, start=at(a, t1) + 0.02), t1 + 80 * MS)
    steps = [rig.tick(t1 + k * DT) for k in range(4, 8)]
    assert not any(s.hold for s in steps) and rig.ctrl.stats.joins[-1].blended  # faded in, no hold
    assert rig.ctrl.rtc_prefix(t1 + 10 * DT, 0.1) is not None  # guided again


def test_late_chunks_are_counted_against_their_planned_delay():
    rig = Rig(make_config(rtc=True, max_acceleration=1e4))
    a = ramp(T0)
    rig.ctrl.accept(a, T0 + 5 * MS)
    for k in range(1, 31):
        rig.tick(T0 + k * DT)
    t0 = T0 + 30 * DT
    rig.ctrl.rtc_prefix(t0, 0.1)  # planned: d = 5 actions, arrival by t0 + 100 ms
    rig.ctrl.accept(ramp(t0, start=a.positions[30]), t0 + 150 * MS)  # it took 150 ms
    for k in range(8, 13):
        rig.tick(t0 + k * DT)
    assert rig.ctrl.stats.late_chunk_ticks == 5 and rig.ctrl.stats.served_steps == 35


def test_wants_inference_and_rtc_prefix_arithmetic():
    rig = Rig(make_config(rtc=True))
    assert rig.ctrl.wants_inference(T0, 0.1)  # nothing to follow
    assert rig.ctrl.rtc_prefix(T0, 0.1) is None
    a = ramp(T0)  # 50 actions: the last due at T0 + 980 ms
    rig.ctrl.accept(a, T0 + 5 * MS)
    for k in range(1, 10):
        rig.tick(T0 + k * DT)
    # less than latency + start_margin + the RTC execution horizon (0.1 + 0.05 + 10 x 0.02 s) left:
    # the leftover still covers the horizon when the next chunk is guided by it
    assert not rig.ctrl.wants_inference(T0 + 629 * MS, 0.1)  # 351 ms left
    assert rig.ctrl.wants_inference(T0 + 631 * MS, 0.1)
    assert rig.ctrl.wants_inference(T0 + 500 * MS, 0.25)
    assert rig.ctrl.wants_inference(T0 + 990 * MS, 0.0)  # exhausted
    off = Rig(make_config(rtc=False))  # without RTC: latency + start_margin only
    off.ctrl.accept(a, T0 + 5 * MS)
    off.tick(T0 + DT)
    assert not off.ctrl.wants_inference(T0 + 829 * MS, 0.1) and off.ctrl.wants_inference(T0 + 831 * MS, 0.1)
    # On the action grid: the raw leftover is a slice; d = ceil(latency / dt).
    p = rig.ctrl.rtc_prefix(T0 + 200 * MS, 0.1)
    assert (p.t0_ns, p.source_t0_ns, p.dt_s, p.execution_horizon) == (T0 + 200 * MS, T0, 0.02, 10)
    assert p.inference_delay == 5 and p.leftover.dtype == np.float32
    np.testing.assert_array_equal(p.leftover, a.raw[10:])
    assert rig.ctrl.rtc_prefix(T0 + 200 * MS, 0.101).inference_delay == 6
    assert rig.ctrl.rtc_prefix(T0 + 200 * MS, 0.0).inference_delay == 0
    # Between actions: resampled at t0 + j*dt (halfway here), to the last action at or before the end.
    p = rig.ctrl.rtc_prefix(T0 + 210 * MS, 0.1)
    assert p.leftover.shape == (39, 6)
    np.testing.assert_allclose(p.leftover, (a.raw[10:49] + a.raw[11:50]) / 2, atol=1e-6)
    # d never exceeds what is left; nothing left: no prefix.
    p = rig.ctrl.rtc_prefix(T0 + 940 * MS, 0.5)
    assert p.leftover.shape[0] == 3 and p.inference_delay == 3
    assert rig.ctrl.rtc_prefix(T0 + 990 * MS, 0.1) is None
    # No prefix during a fade-in (what executes then is not the chunk's own actions) or with RTC off.
    off = Rig(make_config(rtc=False))
    off.ctrl.accept(ramp(T0), T0 + 5 * MS)
    off.tick(T0 + DT)
    assert off.ctrl.rtc_prefix(T0 + 200 * MS, 0.1) is None
    fading = Rig(make_config(rtc=True, blend=5))
    fading.tick(T0)  # holds the measured position: the first chunk fades in from it
    fading.ctrl.accept(ramp(T0), T0 + 5 * MS)
    fading.tick(T0 + DT)
    assert fading.ctrl.rtc_prefix(T0 + 40 * MS, 0.1) is None
    assert fading.ctrl.rtc_prefix(T0 + 140 * MS, 0.1) is not None


def test_bad_joint_states_are_ignored_and_counted():
    rig = Rig(make_config())
    rig.ctrl.note_state(JointSample(T0, ("elbow", "wrist", "shoulder"), np.array([2.0, 3.0, 1.0]), None))
    step = rig.ctrl.step(T0 + MS)
    np.testing.assert_array_equal(step.positions, [1.0, 2.0, 3.0])  # mapped by name
    rig.ctrl.note_state(JointSample(T0 + MS, ("elbow", "wrist"), np.array([0.0, 0.0]), None))
    rig.ctrl.note_state(JointSample(T0 + MS, JOINTS, np.array([0.0, np.nan, 0.0]), None))
    assert rig.ctrl.stats.bad_states == 2
    np.testing.assert_array_equal(rig.ctrl.step(T0 + 2 * MS).positions, [1.0, 2.0, 3.0])


def test_a_clock_jump_back_forgets_the_chunk_and_holds():
    rig, last = _following()
    back = T0 - 30 * S  # a looped bag: the node's clock and the inputs start over
    step = rig.tick(back)
    assert step.hold and step.reasons == ("no_chunk",)
    np.testing.assert_array_equal(step.positions, last.positions)
    assert rig.ctrl.wants_inference(back, 0.1) and rig.ctrl.rtc_prefix(back, 0.1) is None
    fresh = ramp(back, start=last.positions)
    rig.ctrl.accept(fresh, back + 5 * MS)  # not "older than" the chunk from before the jump
    assert not rig.tick(back + DT).hold
