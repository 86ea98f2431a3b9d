"""stable-baselines3 callbacks of every trainer: checkpoints and closed-loop evaluation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback

from trainers_rl.checkpoint import prune, step_dir
from trainyard_core.io import atomic_write_text

if TYPE_CHECKING:
    from trainers_rl.trainer import Trainer

__all__ = ["CheckpointCallback", "EvalCallback"]


class CheckpointCallback(BaseCallback):
    """Save a resumable checkpoint every ``every`` steps and when training ends.

    Saving happens at the start of a rollout, right after an update: the one point where the
    algorithm holds no half-collected data, so a resumed run can continue exactly.
    """

    def __init__(self, trainer: Trainer, root: Path, every: int, keep: int) -> None:
        super().__init__()
        self.trainer, self.root, self.every, self.keep = trainer, root, every, keep
        self._last = -1

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps  # a resumed run's start is already saved

    def _on_rollout_start(self) -> None:
        if self.every and self.num_timesteps - self._last >= self.every:
            self._save()

    def _on_training_end(self) -> None:
        if self.num_timesteps != self._last:
            self._save()

    def _save(self) -> None:
        self.trainer.save_checkpoint(step_dir(self.root, self.num_timesteps))
        prune(self.root, self.keep)
        self._last = self.num_timesteps

    def _on_step(self) -> bool:
        return True


class EvalCallback(BaseCallback):
    """Evaluate the policy every ``every`` steps; log to TensorBoard and ``eval_history.jsonl``.

    ``evaluate`` gets the trainer and returns a dict of numbers (e.g. closed-loop route
    completion on held-out seeds); each becomes ``eval/<name>`` in TensorBoard.
    """

    def __init__(self, evaluate: Callable[[Trainer], dict[str, Any]], trainer: Trainer, every: int,
                 history: Path | None) -> None:
        super().__init__()
        self.evaluate, self.trainer, self.every, self.history = evaluate, trainer, every, history
        self._last = 0
        self.results: list[dict[str, Any]] = []

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps

    def _on_rollout_start(self) -> None:
        if self.every and self.num_timesteps - self._last >= self.every:
            self._run()

    def _on_training_end(self) -> None:
        if self.num_timesteps != self._last:
            self._run()

    def _run(self) -> None:
        self._last = self.num_timesteps
        result = {"step": int(self.num_timesteps), **self.evaluate(self.trainer)}
        for key, value in result.items():
            if isinstance(value, int | float) and key != "step":
                self.logger.record(f"eval/{key}", value)
        self.logger.dump(self.num_timesteps)
        self.results.append(result)
        if self.history is not None:
            lines = []
            if self.history.exists():
                lines = self.history.read_text().splitlines()
            lines.append(json.dumps(result))
            atomic_write_text(self.history, "\n".join(lines) + "\n")

    def _on_step(self) -> bool:
        return True
