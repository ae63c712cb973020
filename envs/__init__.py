"""Real environments with image observations, wrappers, and the world-model environment.

Importing this package registers the suite's gymnasium ids (cheap: no env is built).
"""
