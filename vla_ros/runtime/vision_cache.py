"""Vision embeddings cached per (camera, stamp, image size).

The Qwen3-VL vision tower encodes each image on its own (attention never crosses images), so an
image's embedding (merged tokens and deepstack features) does not depend on the other images in
the batch. With 4 frames per camera, the next tick reuses 3 of them: only the newest frame of
each camera is encoded.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from vla_ros.model.family import ImageEmbedding


class VisionEmbeddingCache:
    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Hashable, ImageEmbedding] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def get(self, key: Hashable) -> ImageEmbedding | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Hashable, item: ImageEmbedding) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
