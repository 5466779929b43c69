"""Compatibility re-export: the Feast objects moved to :mod:`clicks2intent.features.definitions`, the
request-time transforms to :mod:`clicks2intent.features.transforms`.

Kept for two kinds of users: repos that call ``clicks2intent.feast_objects.build``, and feature
registries applied before the move, whose stored on-demand UDF text reads
``from clicks2intent.feast_objects import <transform>`` and is re-executed at every request.
"""

from clicks2intent.features.definitions import *  # noqa: F403
from clicks2intent.features.definitions import build, feature_group, file_sources  # noqa: F401
from clicks2intent.features.transforms import inflight_intent_transform, tile_affinity_transform  # noqa: F401
