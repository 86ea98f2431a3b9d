"""Evaluation: closed-loop driving metrics, the waypoint controller, Gymnasium episodes for
``trainers-rl ppo``, learning-curve plots and the ``trainers-rl evaluate`` command.

It depends on no trainer: policies come in as callables or DrivingVLA models.
"""
