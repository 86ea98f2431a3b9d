"""The embedded backend as Gymnasium environments: a vector env and a single env.

``EmbeddedVectorEnv`` steps N worlds with one array call per step and resets finished ones in
the same step (``AutoresetMode.SAME_STEP``: the last observation is in ``info["final_obs"]``),
the convention stable-baselines3 expects. ``EmbeddedDrivingEnv`` is the same machinery with
N = 1 and no auto-reset, for ``gymnasium.make``. ``info`` follows ``carla_env.contract``: event
keys of the step just taken, observation keys (pose, speed, episode seed and step, the autopilot's
action with ``expert_action``) of the observation returned.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from carla_env.autopilot import Autopilot
from carla_env.config import SimulatorConfig
from carla_env.contract import (
    EXPERT_KEY,
    INFO_KEYS,
    NEIGHBOR_FEATURES,
    STATE_FEATURES,
    DrivingEnv,
    action_space,
    check_action,
    observation_space,
)
from carla_env.reward import RewardConfig, compute_reward
from carla_env.sim.render import render_bev
from carla_env.sim.roads import MapSpec
from carla_env.sim.world import World, WorldParams

__all__ = ["EmbeddedDrivingEnv", "EmbeddedVectorEnv", "world_params"]


def world_params(cfg: SimulatorConfig) -> WorldParams:
    """Resolve a ``SimulatorConfig`` (scenario, overrides) into simulator parameters."""
    sc = cfg.scenario_spec
    kind = cfg.map or sc.map
    lanes, width, limit = sc.lanes, sc.lane_width, sc.speed_limit
    if kind == "ring":
        lanes, width, limit = 2, 3.5, 20.0
    spec = MapSpec(kind=kind,
                   lanes=lanes,
                   lane_width=width,
                   route_length=cfg.route_length or sc.route_length,
                   speed_limit=limit,
                   num_routes=cfg.num_routes,
                   seed=cfg.map_seed)
    return WorldParams(map=spec,
                       control_dt=cfg.control_dt,
                       substeps=cfg.substeps,
                       max_vehicles=cfg.max_vehicles,
                       cross_vehicles=4 if (sc.cross_traffic and kind == "urban") else 0,
                       density_per_km_lane=cfg.traffic_density,
                       friction=sc.friction)


class _Batch:
    """Observations, info and rewards of a ``World``, computed for the whole batch."""

    def __init__(self, cfg: SimulatorConfig, num_envs: int, reward: RewardConfig | None) -> None:
        self.cfg = cfg
        self.world = World(world_params(cfg), num_envs)
        # An explicit ``reward`` wins over the config's; unset scales are this map's.
        self.reward_cfg = (reward or cfg.reward).resolve(self.world.lane_width,
                                                         self.world.speed_limit, cfg.control_dt)
        self.prev_s = np.zeros(num_envs)
        self.prev_steer = np.zeros(num_envs)
        self.episode_seed = np.zeros(num_envs, dtype=np.int64)
        self._autopilot: Autopilot | None = None

    def reset(self, envs: np.ndarray, seeds: np.ndarray) -> None:
        self.world.reset(envs, seeds)
        self.episode_seed[envs] = seeds
        self.prev_s[envs] = self.world.s[envs]
        self.prev_steer[envs] = 0.0

    def autopilot(self) -> np.ndarray:
        """The expert's actions (N, 3) for the worlds' current state."""
        if self._autopilot is None:
            self._autopilot = Autopilot(self.world)
        return self._autopilot.act()

    def observation_info(self) -> dict[str, np.ndarray]:
        """The contract's observation keys, for the worlds' current (returned) state."""
        w = self.world
        info = {
            "x": w.x.copy(),
            "y": w.y.copy(),
            "yaw": w.yaw.copy(),
            "speed": w.v.copy(),
            "episode_seed": self.episode_seed.copy(),
            "episode_step": w.steps.astype(np.int64),
        }
        if self.cfg.expert_action:
            info[EXPERT_KEY] = self.autopilot()
        return info

    def observe(self, envs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Observations of every world, or of worlds ``envs`` only."""
        w = self.world if envs is None else self.world.subset(envs)
        obs: dict[str, np.ndarray] = {}
        for key in self.cfg.observation_keys:
            if key == "state":
                obs[key] = self._state(w)
            elif key == "neighbors":
                obs[key] = self._neighbors(w)
            else:
                sc = self.cfg.scenario_spec
                obs[key] = render_bev(w,
                                      self.cfg.image_height,
                                      self.cfg.image_width,
                                      light=sc.light,
                                      rain=sc.friction < 1.0)
        return obs

    @staticmethod
    def _state(w: World) -> np.ndarray:
        length = w.route_length()
        lane_offset = w.d - w.lane * w.lane_width
        half_road = w.lanes * w.lane_width / 2
        curv = [w.routes.curvature_at(w.route, w.s + a) * 10.0 for a in (10.0, 25.0, 50.0)]
        if w.p.cross_vehicles:
            gap, state = w.next_signal()
            stop = np.minimum(np.where(np.isfinite(gap), gap, 50.0), 50.0) / 50.0
            signal = state / 2.0
        else:
            stop, signal = np.ones(w.n), np.zeros(w.n)
        columns = [
            w.v / w.speed_limit, lane_offset / (w.lane_width / 2), w.heading_error,
            w.last_action[:, 0], w.last_action[:, 1], w.last_action[:, 2],
            np.clip(w.s / length, 0, 1),
            np.maximum(length - w.s, 0) / 1000.0, w.lane / max(1, w.lanes - 1),
            (w.d - (half_road - w.lane_width / 2)) / half_road, *curv, stop, signal,
            np.full(w.n, w.speed_limit / 30.0)
        ]
        assert len(columns) == len(STATE_FEATURES)
        return np.stack(columns, axis=1).astype(np.float32)

    def _neighbors(self, w: World) -> np.ndarray:
        k = self.cfg.neighbors
        out = np.zeros((w.n, k, len(NEIGHBOR_FEATURES)), np.float32)
        if k == 0:
            return out
        x, y, heading, speed, _, _, active = w.traffic_world()
        if x.shape[1] == 0:
            return out
        cos_y, sin_y = np.cos(w.yaw)[:, None], np.sin(w.yaw)[:, None]
        dx, dy = x - w.x[:, None], y - w.y[:, None]
        rel_yaw = heading - w.yaw[:, None]
        cos_r, sin_r = np.cos(rel_yaw), np.sin(rel_yaw)
        feats = np.stack(
            [(cos_y * dx + sin_y * dy) / 50.0, (-sin_y * dx + cos_y * dy) / 50.0,
             (speed * cos_r - w.v[:, None]) / 10.0, speed * sin_r / 10.0, cos_r, sin_r, active],
            axis=2).astype(np.float32)
        dist = np.where(active, dx * dx + dy * dy, np.inf)
        take = min(k, dist.shape[1])
        if take < dist.shape[1]:
            nearest = np.argpartition(dist, take - 1, axis=1)[:, :take]
            order = np.take_along_axis(nearest, np.argsort(np.take_along_axis(dist, nearest, 1), 1),
                                       1)
        else:
            order = np.argsort(dist, axis=1)
        picked = np.take_along_axis(feats, order[..., None], axis=1)
        out[:, :take] = picked * picked[..., -1:]  # absent cars are all zeros
        return out

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        w = self.world
        w.step(actions.astype(np.float64))
        length = w.route_length()
        progress = w.s - self.prev_s
        self.prev_s = w.s.copy()
        steer_change = np.abs(actions[:, 1] - self.prev_steer)
        self.prev_steer = actions[:, 1].astype(np.float64)
        info = {
            "velocity": w.v.copy(),
            "progress": progress,
            "route_progress": np.clip(w.s / length, 0.0, 1.0),
            "lane_deviation": np.abs(w.d - w.lane * w.lane_width),
            "heading_error": w.heading_error.copy(),
            "collision": w.collision.copy(),
            "off_road": w.off_road.copy(),
            "lane_invasion": w.lane_invasion.copy(),
            "red_light": w.red_light.copy(),
            "must_stop": self._must_stop(),
            "route_completed": w.completed.copy(),
            "jerk": w.jerk.copy(),
            "steer_change": steer_change,
        }
        assert tuple(info) == INFO_KEYS
        reward = compute_reward(info, self.reward_cfg)
        terminated = w.collision | w.off_road | w.completed
        truncated = (w.steps >= self.cfg.max_episode_steps) & ~terminated
        return reward.astype(np.float64), terminated, truncated, info

    def _must_stop(self) -> np.ndarray:
        w = self.world
        stop = np.zeros(w.n, dtype=bool)
        if w.p.cross_vehicles:
            gap, state = w.next_signal()
            stop |= (state > 0) & (gap < 30.0)
        cars = w.traffic
        ahead = cars.s - w.s[:, None]
        near = cars.active & (np.abs(cars.d - w.d[:, None])
                              < w.lane_width * 0.8) & (ahead > 0) & (ahead < 15.0) & (cars.v < 1.0)
        return stop | near.any(axis=1)

    def render(self) -> np.ndarray:
        sc = self.cfg.scenario_spec
        return render_bev(self.world, 256, 256, light=sc.light, rain=sc.friction < 1.0)


def _config(config: SimulatorConfig | None, overrides: dict[str, Any]) -> SimulatorConfig:
    cfg = config or SimulatorConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    if cfg.backend != "embedded":
        raise ValueError(f"the embedded environments need backend='embedded', got {cfg.backend!r}")
    return cfg


def _check_render(cfg: SimulatorConfig, render_mode: str | None) -> None:
    if render_mode not in (None, "rgb_array"):
        raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
    if render_mode == "rgb_array" and not cfg.render:
        raise ValueError("render_mode='rgb_array' needs frames, but the SimulatorConfig has "
                         "render=False: set render=True")


class EmbeddedVectorEnv(VectorEnv):
    """N embedded driving worlds stepped as one batch."""

    metadata = {  # noqa: RUF012 (Gymnasium declares it an instance attribute)
        "render_modes": ["rgb_array"],
        "autoreset_mode": AutoresetMode.SAME_STEP,
        "render_fps": 10,
    }

    def __init__(self,
                 num_envs: int = 16,
                 config: SimulatorConfig | None = None,
                 render_mode: str | None = None,
                 reward: RewardConfig | None = None,
                 **overrides: Any) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config = _config(config, overrides)
        _check_render(self.config, render_mode)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.batch = _Batch(self.config, num_envs, reward)
        self.single_observation_space = observation_space(self.config)
        self.single_action_space: gym.spaces.Box = action_space()
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space,
                                                              num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.metadata = {**self.metadata, "render_fps": self.config.fps}
        self._episode_rngs = [np.random.default_rng(self.config.seed + i) for i in range(num_envs)]
        self._started = False

    @property
    def world(self) -> World:
        return self.batch.world

    def _next_seeds(self, envs: np.ndarray) -> np.ndarray:
        return np.array([int(self._episode_rngs[i].integers(2**62)) for i in envs], np.int64)

    def reset(self,
              *,
              seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        envs = np.arange(self.num_envs)
        if seed is not None:
            seeds = [seed + i for i in envs] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an int or {self.num_envs} ints, got {len(seeds)}")
            self._episode_rngs = [np.random.default_rng(s) for s in seeds]
        self.batch.reset(envs, self._next_seeds(envs))
        self._started = True
        return self.batch.observe(), self.batch.observation_info()

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_action(actions, batch=self.num_envs)
        reward, terminated, truncated, info = self.batch.step(actions)
        done = terminated | truncated
        if done.any():
            envs = np.flatnonzero(done)
            final = self.batch.observe(envs)
            info["final_obs"] = {
                key: np.zeros((self.num_envs, *value.shape[1:]), value.dtype)
                for key, value in final.items()
            }
            for key, value in final.items():
                info["final_obs"][key][envs] = value
            info["_final_obs"] = done.copy()
            self.batch.reset(envs, self._next_seeds(envs))
        info.update(self.batch.observation_info())
        return self.batch.observe(), reward, terminated, truncated, info

    def autopilot(self) -> np.ndarray:
        """The expert's actions for the current state of every world.

        Kept for callers that drive the embedded world directly; evaluation reads the same
        actions from ``info["expert_action"]`` (``SimulatorConfig.expert_action``).
        """
        return self.batch.autopilot()

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode != "rgb_array":
            return None
        return tuple(self.batch.render())


class EmbeddedDrivingEnv(DrivingEnv):
    """One embedded driving world (``gymnasium.make("trainyard/Driving-v0")``)."""

    def __init__(self,
                 config: SimulatorConfig | None = None,
                 render_mode: str | None = None,
                 reward: RewardConfig | None = None,
                 **overrides: Any) -> None:
        cfg = _config(config, overrides)
        _check_render(cfg, render_mode)
        self._setup(cfg, render_mode)
        self.batch = _Batch(self.config, 1, reward)
        self._started = False

    @property
    def world(self) -> World:
        return self.batch.world

    def reset(self,
              *,
              seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**62))
        self.batch.reset(np.array([0]), np.array([episode_seed]))
        self._started = True
        return self._unbatch(self.batch.observe()), self._single(self.batch.observation_info())

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        action = check_action(action)
        reward, terminated, truncated, info = self.batch.step(action[None])
        info.update(self.batch.observation_info())
        return (self._unbatch(self.batch.observe()), float(reward[0]), bool(terminated[0]),
                bool(truncated[0]), self._single(info))

    def autopilot(self) -> np.ndarray:
        """The expert's action for the current state."""
        return self.batch.autopilot()[0]

    @staticmethod
    def _single(info: dict[str, np.ndarray]) -> dict[str, Any]:
        # Scalars as Python numbers; the expert's action stays a (3,) array.
        return {k: v[0] if v.ndim > 1 else v[0].item() for k, v in info.items()}

    @staticmethod
    def _unbatch(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in obs.items()}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.batch.render()[0]
