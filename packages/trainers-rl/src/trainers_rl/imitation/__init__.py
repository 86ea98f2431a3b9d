"""Imitation learning: autopilot demonstrations (``demos``) and behaviour cloning (``bc``).

Nothing here depends on the RL trainers: cloning produces a DrivingVLA that RL may start from.
"""
