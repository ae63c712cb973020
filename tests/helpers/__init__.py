"""Shared test helpers, imported as ``tests.helpers.<module>`` (the repository root is on the path).

``fits`` (fake training curves), ``metric_weights`` (skip without the metric networks),
``sweep_fake_trainer`` (a stand-in sweep entry), ``world_models`` (a tiny tokenizer, WM-Token
model and simulator), ``token_shards`` (tiny token shards), ``tokenizers`` (tiny VQ-VAE
datasets), ``pixel_envs`` (tiny image envs registered with gymnasium).
"""
