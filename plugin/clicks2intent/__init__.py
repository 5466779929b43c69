"""clicks2intent: web clickstreams to session embeddings and intent labels, served through Feast.

Public API: the clickstream contract (:mod:`clicks2intent.events`), PII scrubbing
(:mod:`clicks2intent.pii`), the simulator (:mod:`clicks2intent.simulator`) and the parts built on them.
"""

from __future__ import annotations

__version__ = "0.1.0"
