"""Compatibility re-export: the Feast objects moved to :mod:`clicks2intent.features.definitions`.

Kept for two kinds of users: repos that call ``clicks2intent.feast_objects.build``, and feature
registries applied before the move, whose stored on-demand UDF text reads
``from clicks2intent.feast_objects import <transform>`` and is re-executed at every request.
"""

from clicks2intent.features.definitions import *  # noqa: F403
from clicks2intent.features import build, file_sources  # noqa: F401
