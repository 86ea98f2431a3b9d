"""The evaluator through the public API on CARLA-typed fake vector envs (no server).

``FakeCarlaVectorEnv`` is what ``make_vector_env`` gives for ``backend: carla`` as far as the
evaluator can tell: a same-step-autoreset ``VectorEnv`` whose config says carla, emitting the
contract's info keys. Its episodes are scripted from their episode seeds (length and outcome),
so the expected records are known without the evaluator's arithmetic.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from carla_env import SimulatorConfig
from carla_env.contract import (
    EXPERT_KEY,
    INFO_KEYS,
    OBSERVATION_INFO_KEYS,
    DrivingEnv,
    action_space,
    check_action,
    observation_space,
)
from carla_env.envs import ContractInfo
from carla_env.evaluation import (
    BASELINES,
    OUTCOMES,
    autopilot_policy,
    evaluate,
    evaluate_policies,
    random_policy,
    table_row,
)

MAX_STEPS = 12
ROW_KEYS = [
    "policy", "episodes", "collision_free", "route_completion", "completed", "collisions_per_km",
    "off_road", "lane_invasions", "km_driven", "mean_speed_mps", "mean_abs_jerk"
]


def plan(episode_seed: int) -> tuple[int, str]:
    """The scripted (length, outcome) of the episode reset with ``episode_seed``."""
    outcome = OUTCOMES[(episode_seed // 7) % 4]
    return (MAX_STEPS if outcome == "timeout" else 2 + episode_seed % 7), outcome


def events(steps: np.ndarray, seeds: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    """The contract's event keys for envs that have taken ``steps`` steps of their episodes."""
    length, outcome = (np.array(v) for v in zip(*[plan(int(s)) for s in seeds], strict=True))
    end = steps >= length
    speed = 10.0 * actions[:, 0].astype(np.float64)
    no = np.zeros(len(steps), dtype=bool)
    return {
        "velocity": speed,
        "progress": speed * 0.1,
        "route_progress": np.where(outcome == "route_completed", 1.0, 0.5) * steps / length,
        "lane_deviation": np.zeros(len(steps)),
        "heading_error": np.zeros(len(steps)),
        "collision": end & (outcome == "collision"),
        "off_road": end & (outcome == "off_road"),
        "lane_invasion": no.copy(),
        "red_light": no.copy(),
        "must_stop": no.copy(),
        "route_completed": end & (outcome == "route_completed"),
        "jerk": np.ones(len(steps)),
        "steer_change": np.abs(actions[:, 1]).astype(np.float64),
    }


class FakeCarlaVectorEnv(VectorEnv):
    """A CARLA-typed vector env with scripted episodes and same-step autoreset."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}  # noqa: RUF012

    def __init__(self, num_envs: int = 3, expert: bool = False) -> None:
        self.config = SimulatorConfig(backend="carla", max_episode_steps=MAX_STEPS)
        self.num_envs = num_envs
        self.expert = expert
        self.single_observation_space = observation_space(self.config)
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.ended: list[list[tuple[int, str, int]]] = [[] for _ in range(num_envs)]
        self.actions_seen: list[np.ndarray] = []

    def reset(self,
              *,
              seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        assert isinstance(seed, list) and len(seed) == self.num_envs
        self._rngs = [np.random.default_rng(s) for s in seed]
        self.seeds = np.array([self._draw(i) for i in range(self.num_envs)], np.int64)
        self.steps = np.zeros(self.num_envs, np.int64)
        return self._obs(), self._obs_info()

    def _draw(self, i: int) -> int:
        return int(self._rngs[i].integers(2**62))

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = check_action(actions, batch=self.num_envs)
        self.actions_seen.append(actions)
        self.steps += 1
        info: dict[str, Any] = events(self.steps, self.seeds, actions)
        completed = info["route_completed"]
        terminated = info["collision"] | info["off_road"] | completed
        truncated = (self.steps >= MAX_STEPS) & ~terminated
        for i in np.flatnonzero(terminated | truncated).tolist():
            self.ended[i].append(
                (int(self.seeds[i]), plan(int(self.seeds[i]))[1], int(self.steps[i])))
            self.seeds[i], self.steps[i] = self._draw(i), 0
        info.update(self._obs_info())
        return self._obs(), info["progress"].copy(), terminated, truncated, info

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            key: np.zeros((self.num_envs, *space.shape), space.dtype)
            for key, space in self.single_observation_space.spaces.items()
        }

    def _obs_info(self) -> dict[str, np.ndarray]:
        info = {
            "x": self.steps * 1.0,
            "y": np.zeros(self.num_envs),
            "yaw": np.zeros(self.num_envs),
            "episode_seed": self.seeds.copy(),
            "episode_step": self.steps.copy(),
        }
        if self.expert:
            info[EXPERT_KEY] = np.tile(np.array([0.5, 0.0, 0.0], np.float32), (self.num_envs, 1))
        return info


class FakeCarlaEnv(DrivingEnv):
    """One scripted CARLA-typed env, as ``CarlaDrivingEnv`` returns info (no autoreset)."""

    def __init__(self) -> None:
        self._setup(SimulatorConfig(backend="carla", max_episode_steps=MAX_STEPS), None)

    def reset(self,
              *,
              seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self.seed_, self.steps = int(self.np_random.integers(2**62)), 0
        return self._obs(), self._obs_info()

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        action = check_action(action)
        self.steps += 1
        batch = events(np.array([self.steps]), np.array([self.seed_]), action[None])
        info: dict[str, Any] = {k: v[0].item() for k, v in batch.items()}
        terminated = bool(info["collision"] or info["off_road"] or info["route_completed"])
        truncated = self.steps >= MAX_STEPS and not terminated
        return self._obs(), info["progress"], terminated, truncated, info | self._obs_info()

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            key: np.zeros(space.shape or (), space.dtype)
            for key, space in self.observation_space.spaces.items()
        }

    def _obs_info(self) -> dict[str, Any]:
        return {
            "x": float(self.steps),
            "y": 0.0,
            "yaw": 0.0,
            "episode_seed": self.seed_,
            "episode_step": self.steps
        }


def cruise(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
    """A policy of the observations' batch size: throttle 0.8 (8 m/s on the fake)."""
    n = len(next(iter(obs.values())))
    return np.tile(np.array([0.8, 0.1, 0.0], np.float32), (n, 1))


def test_rows_for_every_baseline_and_a_policy_across_autoresets() -> None:
    episodes, n = 8, 3
    rows = {}
    for name, policy in [("autopilot", autopilot_policy()), ("random", random_policy(0)),
                         ("cruise", cruise)]:
        envs = FakeCarlaVectorEnv(n, expert=True)
        summary = evaluate(envs, policy, episodes, seed=40, name=name)
        rows[name] = table_row(summary)
        assert list(rows[name]) == ROW_KEYS and rows[name]["episodes"] == episodes
        # Env i plays episodes i, i + n, ...: shares 3, 3, 2; each the fake's own record.
        per_episode = summary["per_episode"]
        assert len(per_episode) == episodes
        expected = [(k % n, k // n) for k in range(episodes)]
        assert [(e["seed"] - 40, e["episode_of_env"]) for e in per_episode] == expected
        for record, (env, nth) in zip(per_episode, expected, strict=True):
            _, outcome, steps = envs.ended[env][nth]
            assert (record["outcome"], record["steps"]) == (outcome, steps)
            assert record["collisions"] == (outcome == "collision")
    assert rows["autopilot"]["mean_speed_mps"] == pytest.approx(5.0)
    assert rows["cruise"]["mean_speed_mps"] == pytest.approx(8.0)
    assert rows["cruise"]["mean_abs_jerk"] == pytest.approx(1.0)
    assert 0.0 < rows["random"]["mean_speed_mps"] < 10.0
    assert BASELINES["autopilot"]().__name__ == "autopilot"


def test_random_draws_follow_the_episode_not_the_env() -> None:
    # The same episode seeds on 1 env and on 4: each episode's first actions are the same.
    one, four = FakeCarlaVectorEnv(1), FakeCarlaVectorEnv(4)
    evaluate(one, random_policy(3), 1, seed=9)
    evaluate(four, random_policy(3), 4, seed=9)
    np.testing.assert_array_equal(one.actions_seen[0][0], four.actions_seen[0][0])
    assert not np.array_equal(four.actions_seen[0][0], four.actions_seen[0][1])
    other = FakeCarlaVectorEnv(1)
    evaluate(other, random_policy(4), 1, seed=9)
    assert not np.array_equal(one.actions_seen[0], other.actions_seen[0])


def test_autopilot_without_expert_action_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"needs info\['expert_action'\]") as raised:
        evaluate(FakeCarlaVectorEnv(2, expert=False),
                 autopilot_policy(),
                 4,
                 seed=0,
                 name="autopilot")
    assert "\n" not in str(raised.value)
    # evaluate_policies refuses before reaching for a CARLA server (none runs here).
    sim = SimulatorConfig(backend="carla", carla_port=1, carla_timeout=0.5)
    with pytest.raises(ValueError, match=r"'autopilot' needs info\['expert_action'\].*carla"):
        evaluate_policies(sim, {"random": random_policy(), "autopilot": autopilot_policy()})
    with pytest.raises(ValueError, match="expert_action=true needs a backend with an expert"):
        SimulatorConfig(backend="carla", expert_action=True)


def test_gymnasium_vector_env_gets_the_contracts_info_layout() -> None:
    # Sync/AsyncVectorEnv put a finished step's info in final_info; ContractInfo brings the
    # event keys back up, so the evaluator sees what the embedded env and the fake give.
    cfg = SimulatorConfig(backend="carla", max_episode_steps=MAX_STEPS)
    sync = gym.vector.SyncVectorEnv([FakeCarlaEnv for _ in range(3)],
                                    autoreset_mode=AutoresetMode.SAME_STEP)
    wrapped = ContractInfo(sync, cfg)
    obs, info = wrapped.reset(seed=[5, 6, 7])
    seeds = info["episode_seed"].copy()
    for _ in range(MAX_STEPS):
        obs, _, terminated, truncated, info = wrapped.step(cruise(obs, info))
        done = terminated | truncated
        if done.any():
            break
    assert done.any() and set(INFO_KEYS + OBSERVATION_INFO_KEYS) <= set(info)
    assert (info["collision"] | info["off_road"] | info["route_completed"] | truncated)[done].all()
    assert (info["episode_step"][done] == 0).all() and (info["episode_seed"][done]
                                                        != seeds[done]).all()
    np.testing.assert_allclose(info["velocity"], 8.0, rtol=1e-6)
    wrapped.close()
    # The same scripted episodes as the vector fake: the same records.
    sync = gym.vector.SyncVectorEnv([FakeCarlaEnv for _ in range(3)],
                                    autoreset_mode=AutoresetMode.SAME_STEP)
    through_gym = evaluate(ContractInfo(sync, cfg), random_policy(1), 7, seed=5)
    direct = evaluate(FakeCarlaVectorEnv(3), random_policy(1), 7, seed=5)
    assert through_gym == direct


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="episodes must be >= 1, got 0"):
        evaluate(FakeCarlaVectorEnv(1), cruise, 0, seed=0)
    next_step = gym.vector.SyncVectorEnv([FakeCarlaEnv], autoreset_mode=AutoresetMode.NEXT_STEP)
    with pytest.raises(ValueError, match="same-step autoreset"):
        evaluate(next_step, cruise, 1, seed=0)
    with pytest.raises(ValueError, match="video_policy 'x' is not one of"):
        evaluate_policies(SimulatorConfig(), {"cruise": cruise}, 1, video_policy="x", out_dir=".")
