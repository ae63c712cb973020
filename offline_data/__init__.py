"""Offline trajectories: Minari datasets, collection, importers, discretizers, token shards."""
