"""stable-baselines3 callbacks of every trainer, composed as SB3's ``EveryNTimesteps`` does.

*When* is one callback, *what* another: ``AtRolloutStart(every, what)`` triggers ``what``
(``SaveCheckpoint``, ``RecordEvaluation``, or any SB3 callback) every ``every`` env steps, as
``EveryNTimesteps`` does, but only at the start of a rollout, right after an update, and once
more when training ends. That is the one point where the algorithm holds no half-collected
data, so a checkpoint taken there resumes exactly, and an evaluation there sees the weights
an update just produced. Nothing here names a trainer: a checkpoint is saved through the
function it is given.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback, EveryNTimesteps

from trainers_rl.rl.checkpoint import prune, step_dir
from trainyard_core.io import atomic_write_text

__all__ = ["AtRolloutStart", "RecordEvaluation", "SaveCheckpoint"]

log = logging.getLogger(__name__)


class AtRolloutStart(EveryNTimesteps):
    """Trigger ``callback`` every ``n_steps`` env steps at a rollout's start, and at the end.

    SB3's ``EveryNTimesteps`` checks after every env step, i.e. mid-rollout; this checks the
    same condition (``n_steps`` since the last trigger) only when a rollout starts. ``n_steps``
    0 triggers only at the end. The count starts where training starts: a resumed run's first
    step is already its checkpoint's.
    """

    def __init__(self, n_steps: int, callback: BaseCallback) -> None:
        super().__init__(n_steps, callback)

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self.last_time_trigger = self.num_timesteps

    def _on_step(self) -> bool:
        return True  # never mid-rollout (EveryNTimesteps would trigger here)

    def _on_rollout_start(self) -> None:
        if self.n_steps and self.num_timesteps - self.last_time_trigger >= self.n_steps:
            self._trigger()

    def _on_training_end(self) -> None:
        if self.num_timesteps != self.last_time_trigger:
            self._trigger()

    def _trigger(self) -> None:
        self.last_time_trigger = self.num_timesteps
        self._on_event()


class SaveCheckpoint(BaseCallback):
    """Save a resumable checkpoint under ``root`` (``step_<N>/``) and keep the newest ``keep``.

    ``save(path)`` writes it (a trainer's ``save_checkpoint``); wrap this in
    ``AtRolloutStart`` so it runs where a checkpoint can resume exactly.
    """

    def __init__(self, save: Callable[[Path], Any], root: Path, keep: int) -> None:
        super().__init__()
        self.save, self.root, self.keep = save, root, keep

    def _on_step(self) -> bool:
        path = step_dir(self.root, self.num_timesteps)
        self.save(path)
        prune(self.root, self.keep)
        log.debug("checkpoint: %s", path)
        return True


class RecordEvaluation(BaseCallback):
    """Run ``evaluate()`` (a dict of numbers, e.g. closed-loop route completion on validation
    seeds); log each number as ``eval/<name>`` to TensorBoard and the row to ``history``
    (JSON lines, rewritten atomically)."""

    def __init__(self, evaluate: Callable[[], dict[str, Any]], history: Path | None) -> None:
        super().__init__()
        self.evaluate, self.history = evaluate, history
        self.results: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        result = {"step": int(self.num_timesteps), **self.evaluate()}
        for key, value in result.items():
            if isinstance(value, int | float) and key != "step":
                self.logger.record(f"eval/{key}", value)
        self.logger.dump(self.num_timesteps)
        self.results.append(result)
        log.info("validation at step %d: %s", self.num_timesteps,
                 ", ".join(f"{k} {v:.3g}" for k, v in result.items() if isinstance(v, float)))
        if self.history is not None:
            lines = []
            if self.history.exists():
                lines = self.history.read_text().splitlines()
            lines.append(json.dumps(result))
            atomic_write_text(self.history, "\n".join(lines) + "\n")
        return True
