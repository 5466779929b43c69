"""Evaluation on top of every stage: metrics with one paired bootstrap, the four-variant ablation
(simulated through Feast, real MSNBC sessions), the encoder probe and the report writers."""
