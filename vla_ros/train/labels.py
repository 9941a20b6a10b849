"""Reasoning labels: the corpus of the sim's sentence grammar, and reading a maneuver back.

The grammar lives in `vla_ros.sim.labels`; the corpus here enumerates it (every cause, pairs of
causes, every action) so the BPE merges cover each phrase the model must write. Reading a
maneuver back from a sentence is `vla_ros.replay.labels.maneuver_of`.
"""
from __future__ import annotations

import itertools

from vla_ros.replay.labels import ACTION_WORDS
from vla_ros.sim.labels import sentence

SPEED_LIMITS_KPH = tuple(range(30, 140, 10))


def single_causes() -> list[str]:
    curves = [f"{sharp}{side} curve ahead" for sharp in ("", "sharp ") for side in ("left", "right")]
    lead = [f"lead vehicle {w}" for w in ("stopped", "braking", "slower", "moving off", "speeding up", "ahead")]
    limits = [f"speed limit {w} to {k}" for w in ("drops", "rises") for k in SPEED_LIMITS_KPH]
    return [*curves, "road straightens ahead", *lead, "vehicle cutting in from the left", *limits, "road clear"]


def grammar_corpus() -> list[str]:
    """Every sentence with one cause, and pairs of causes (limits paired with one value only, to
    keep the corpus small: the digits are learned from the singles)."""
    singles = single_causes()
    short = [c for c in singles if not c.startswith("speed limit") or c.endswith(" 50")]
    out = [sentence([c], a) for c in singles for a in ACTION_WORDS]
    out += [sentence([c1, c2], a) for c1, c2 in itertools.permutations(short, 2) for a in ACTION_WORDS]
    return out
