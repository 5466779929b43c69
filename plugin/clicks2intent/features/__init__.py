"""The feature stage: the offline build job, the Feast definitions, request-time transforms, store access.

* :mod:`~clicks2intent.features.build`: events + embeddings + intents + identity links → the parquet
  sources Feast reads (``c2i features build``).
* :mod:`~clicks2intent.features.definitions`: the Feast objects (entities, views, request sources,
  on-demand views, services), built by functions a team's feature repo calls.
* :mod:`~clicks2intent.features.transforms`: what the on-demand views run per request (the module
  applied registries import their UDFs from).
* :mod:`~clicks2intent.features.store`: opening a store (embedded or production), historical and
  online reads.
"""
