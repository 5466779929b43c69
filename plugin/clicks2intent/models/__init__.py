"""The model stage: Feast rows → model inputs, the XGBoost models, training sets, the model store, explanations.

* :mod:`~clicks2intent.models.inputs`: the one mapping from feature rows to model columns.
* :mod:`~clicks2intent.models.xgb`: the multi-class estimator and the stored ``FeatureModel``.
* :mod:`~clicks2intent.models.training_sets`: entity rows, point-in-time features, the time split.
* :mod:`~clicks2intent.models.store`: the BentoML model store entries and their metadata.
* :mod:`~clicks2intent.models.explain`: contributions grouped as baseline / embedding / labels.
"""
