"""clicks2intent: web clickstreams to session embeddings and intent labels, served through Feast.

Public API: the clickstream contract (:mod:`clicks2intent.data.contract`), PII scrubbing
(:mod:`clicks2intent.data.pii`), the simulator (:mod:`clicks2intent.data.simulator`) and the parts built on them.
"""

from __future__ import annotations

__version__ = "0.1.0"
