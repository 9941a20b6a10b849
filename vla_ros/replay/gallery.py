"""The report's gallery: which ticks it shows (the worst and the most typical), and their front
camera image read back from the bag at full resolution.

The evaluation keeps only each tick's front-camera stamp while it runs (no image copies, no
encoding per tick); once a bag is done the chosen ticks' frames are fetched by stamp. A JPEG or
PNG is kept as recorded; a raw image is encoded to JPEG at its own size.
"""
from __future__ import annotations

import io
import logging
from contextlib import closing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from vla_ros.replay.bag_io import read_messages
from vla_ros.sensors.image_decode import DecodeError, raw_pixels
from vla_ros.sensors.stamps import StampError, stamp_ns

if TYPE_CHECKING:
    from vla_ros.replay.tick_record import TickRecord

_LOG = logging.getLogger("vla_ros.replay")


def gallery_ticks(records: Sequence["TickRecord"], keep: int) -> list[int]:
    """Indices of the `keep` worst and the `keep` most typical (ADE nearest the median) ticks."""
    if not records or keep <= 0:
        return []
    ade = np.array([r.ade for r in records])
    worst = np.argsort(-ade, kind="stable")[:keep].tolist()
    typical = np.argsort(np.abs(ade - np.median(ade)), kind="stable")[:keep].tolist()
    return sorted(set(worst) | set(typical))


def _image_bytes(msg: object) -> bytes:
    """A camera message as bytes PIL can open: compressed data as recorded, raw pixels as JPEG."""
    if hasattr(msg, "format"):  # sensor_msgs/CompressedImage
        data = bytes(msg.data)
        Image.open(io.BytesIO(data)).verify()  # only keep what the report can show
        return data
    rgb = raw_pixels(msg.encoding, msg.height, msg.width, msg.step, msg.data)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def attach_front_images(bag: str | Path, topic: str, records: Sequence["TickRecord"], keep: int) -> int:
    """Set `front_jpeg` on the gallery ticks of `records` (clearing it on the others) from the
    bag's `topic` messages whose header stamps match. Returns how many images were attached; a
    frame that cannot be read only costs its picture."""
    chosen = gallery_ticks(records, keep)
    for r in records:
        r.front_jpeg = None
    wanted: dict[int, list["TickRecord"]] = {}
    for i in chosen:
        stamp = records[i].front_stamp_ns
        if stamp is not None:
            wanted.setdefault(int(stamp), []).append(records[i])
    if not wanted:
        return 0
    last_tick = max(r.tick_ns for recs in wanted.values() for r in recs)
    attached = 0
    with closing(read_messages(bag, [topic])) as messages:
        for m in messages:
            if m.log_time_ns > last_tick:
                break
            try:
                stamp = stamp_ns(m.msg) if m.msg is not None else None
                # A looped bag repeats stamps: a tick takes the newest frame received by its time.
                takers = [r for r in wanted.get(stamp, ()) if m.log_time_ns <= r.tick_ns]  # type: ignore[arg-type]
                if not takers:
                    continue
                data = _image_bytes(m.msg)
            except (StampError, DecodeError, OSError, ValueError, AttributeError) as exc:
                _LOG.warning("%s: front camera frame on %s unreadable for the gallery (%s)", bag, topic, exc)
                continue
            for rec in takers:
                attached += rec.front_jpeg is None
                rec.front_jpeg = data
    return attached
