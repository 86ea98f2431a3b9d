"""A DrivingVLA as a batch policy of the one evaluator (``carla_env.evaluation``).

carla-env evaluates any ``BatchPolicy`` (``(obs, info) -> actions``) over the Gymnasium vector
API, with its own baselines (autopilot, random). What it cannot know is how a trained
DrivingVLA drives: through its control head, or through its waypoint head followed by the
``WaypointController``. That is what this module adds, reading only observations and the
contract's ``info`` keys, so the same policy runs on the embedded batch and on CARLA servers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch

from carla_env import SimulatorConfig
from carla_env.contract import EXPERT_BACKENDS
from carla_env.embedded import world_params
from carla_env.evaluation import BatchPolicy, needs_expert
from driving_vla import DrivingVLA
from trainers_rl.evaluation.controller import ControllerConfig, WaypointController

__all__ = ["MODEL_MODES", "ego_speed", "model_policy", "runnable_on", "state_speed_limit"]

log = logging.getLogger(__name__)

MODEL_MODES = ("controls", "waypoints")


def state_speed_limit(sim: SimulatorConfig) -> float | None:
    """The speed (m/s) that the ``state`` observation's speed feature is a fraction of, when
    it is one number for the whole run: the embedded map's limit. ``None`` on CARLA, whose
    state divides by the limit of the road the ego is on, which changes along the route."""
    return world_params(sim).map.speed_limit if sim.backend == "embedded" else None


def ego_speed(obs: dict[str, np.ndarray], info: dict[str, Any],
              speed_limit: float | None) -> np.ndarray:
    """The ego speeds (N,) in m/s of the observation ``obs``.

    From the ``state`` observation times ``speed_limit`` when both are there (the arithmetic
    the recorded figures were made with, float32 feature and all), else the contract's
    observation key ``info["speed"]``. Not the event key ``velocity``: after an autoreset
    that is the finished episode's last speed, not the new observation's.
    """
    if speed_limit is not None and "state" in obs:
        return obs["state"][:, 0].astype(np.float64) * speed_limit
    return np.asarray(info["speed"], dtype=np.float64)


def model_policy(model: DrivingVLA,
                 mode: str = "controls",
                 controller_config: ControllerConfig | None = None,
                 *,
                 sim: SimulatorConfig | None = None) -> BatchPolicy:
    """A DrivingVLA driving through its control head or its waypoint head.

    ``controls``: the control head's actions (``model.act``). ``waypoints``: the predicted
    waypoints, followed by a ``WaypointController`` stepping at ``sim.control_dt``, which is
    why that mode needs ``sim`` (the simulator config the env was built from); a controller
    tuned for another step would oscillate or lag. Its integrator restarts where
    ``info["episode_step"]`` is 0 (a new episode).
    """
    if mode not in MODEL_MODES:
        raise ValueError(f"mode must be one of {', '.join(MODEL_MODES)}, got {mode!r}")
    if mode == "waypoints" and sim is None:
        raise ValueError("model_policy(mode='waypoints') needs sim=, the SimulatorConfig of the "
                         "env it drives (for control_dt and the ego speed)")
    model.eval()
    keys = list(model.config.observation_keys)
    controller = WaypointController(controller_config)
    limit = None
    if sim is not None:
        limit = state_speed_limit(sim)
        if controller.config.control_dt != sim.control_dt:
            controller.config = dataclasses.replace(controller.config, control_dt=sim.control_dt)

    def act(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        missing = [k for k in keys if k not in obs]
        if missing:
            raise ValueError(f"the model reads observation(s) {missing} that the env does not "
                             f"give (env keys: {sorted(obs)})")
        with torch.no_grad():
            if mode == "controls":
                return model.act(obs).float().cpu().numpy()
            inputs = {k: torch.as_tensor(obs[k]).to(model.device) for k in keys}
            waypoints = model(**inputs).waypoints.double().cpu().numpy()
        new_episode = np.asarray(info["episode_step"]) == 0
        return controller.act(waypoints, ego_speed(obs, info, limit), new_episode=new_episode)

    act.__name__ = act.__qualname__ = f"model-{mode}"
    return act


def runnable_on(sim: SimulatorConfig, policies: dict[str, BatchPolicy]) -> dict[str, BatchPolicy]:
    """``policies`` less those that ``sim.backend`` cannot drive, with a warning naming them.

    A policy that reads the expert's action (the autopilot) needs a backend that has an expert
    (``carla_env.contract.EXPERT_BACKENDS``); CARLA has none, so its table has every other row.
    """
    if sim.backend in EXPERT_BACKENDS:
        return dict(policies)
    skipped = [name for name, policy in policies.items() if needs_expert(policy)]
    if skipped:
        log.warning(
            "the %s backend has no expert (no info['expert_action'], see "
            "carla_env.contract): leaving out %s", sim.backend, ", ".join(skipped))
    return {name: policy for name, policy in policies.items() if name not in skipped}
