"""Evaluation: a DrivingVLA as a batch policy of carla-env's one closed-loop evaluator
(``carla_env.evaluation``), the waypoint controller, Gymnasium episodes for ``trainers-rl
ppo``, learning-curve plots and the ``trainers-rl evaluate`` command.

It depends on no trainer: policies come in as callables or DrivingVLA models.
"""
