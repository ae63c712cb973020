"""Offline trajectories: Minari datasets, collection, importers, action discretizers, token shards."""
