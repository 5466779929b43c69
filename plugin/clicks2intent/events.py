"""Compatibility re-export: the clickstream contract moved to :mod:`clicks2intent.data.contract`.

Kept because the README and users' code import ``clicks2intent.events.validate_events``.
"""

from clicks2intent.data.contract import *  # noqa: F403
from clicks2intent.data.contract import EVENT_SCHEMA, ValidationResult, read_events, validate_events  # noqa: F401
