"""A Gymnasium vector env seen as a stable-baselines3 ``VecEnv``, without per-env stepping.

``carla_env``'s embedded simulator steps every world in one array call and resets finished
worlds in the same step (``AutoresetMode.SAME_STEP``), which is SB3's convention too; this
adapter only renames things: ``final_obs`` becomes each done env's ``terminal_observation``,
truncation becomes ``TimeLimit.truncated``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):
    """Wrap a same-step-autoreset ``gymnasium.vector.VectorEnv`` for stable-baselines3."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode is not None and str(getattr(mode, "value", mode)) != "SameStep":
            raise ValueError(f"SB3VecEnv needs a vector env with AutoresetMode.SAME_STEP, got "
                             f"{mode}")
        self.env = env  # before super().__init__, which reads render_mode through get_attr
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self.sim_seconds = 0.0  # wall time spent inside the wrapped env's step()

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else None
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async() first"
        start = time.perf_counter()
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        self.sim_seconds += time.perf_counter() - start
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            final = info["final_obs"]
            for i in np.flatnonzero(dones):
                if isinstance(final, dict):
                    infos[i]["terminal_observation"] = {k: v[i] for k, v in final.items()}
                else:
                    infos[i]["terminal_observation"] = final[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                for key in ("route_completed", "collision", "off_road", "route_progress"):
                    if key in info:
                        infos[i][key] = info[key][i]
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    def _indices(self, indices: VecEnvIndices) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self.env, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self,
                   method_name: str,
                   *method_args: Any,
                   indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self,
                       wrapper_class: type[gym.Wrapper],
                       indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
