"""The main job: demonstrations → behaviour cloning → RL fine-tuning → evaluation → export.

``trainers-rl train --config configs/train/driving.yaml`` (``make train``) runs every stage
into one run directory and ends with the closed-loop evaluation table::

    runs/driving-<time>/
      config.yaml          the resolved config of this run
      demos/               autopilot demonstrations (meta.json, data.npz), stage.json
      bc/                  the behaviour-cloned DrivingVLA and its losses, stage.json
      rl/                  checkpoints/, monitor/, tensorboard/, eval_history.jsonl
      model/               the final DrivingVLA (``DrivingVLA.from_pretrained``)
      export/              model.onnx and model.pt (TorchScript), with their parity
      eval.json            policy, behaviour cloning, autopilot (not on CARLA: no expert) and
                           random on held-out seeds (carla_env.evaluation)
      episode.gif          one evaluation episode of the final policy
      learning_curve.png   training returns and evaluation during training
      summary.json         stage timings and where everything is

Demonstrations and cloning always use the embedded simulator (its autopilot is the expert);
RL and evaluation use ``sim`` — the embedded backend by default, CARLA servers when
``sim.backend: carla``. ``resume=RUN_DIR`` (``--resume``) continues a run on its own
config.yaml: finished stages are kept and RL continues from its last checkpoint; settings given
with it may not change the run (``RESUME_FREE``, ``RESUME_GROW`` say what may). A stage is
finished when its marker (``STAGE_DONE``) is there, written last and atomically; one without
it is redone from scratch, so a run killed mid-write never resumes on half a stage. ``--check``
runs only the checks every run starts with (``preflight``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from carla_env import SimulatorConfig
from carla_env.envs import make_vector_env
from carla_env.evaluation import autopilot_policy, evaluate_policies, random_policy
from driving_vla import DrivingVLA
from trainers_rl.evaluation.plots import plot_training
from trainers_rl.evaluation.policies import model_policy, runnable_on
from trainers_rl.imitation.bc import BCConfig, BCTrainingConfig, train_bc
from trainers_rl.imitation.demos import DemoConfig, record_demos
from trainers_rl.preflight import (
    EXPORT_EXTRA,
    carla_extra,
    check_tracking,
    check_writable,
    require_modules,
    wandb_extra,
)
from trainers_rl.rl.callbacks import AtRolloutStart, RecordEvaluation
from trainers_rl.rl.config import inapplicable_options
from trainers_rl.rl.ppo import PPOConfig, PPOTrainer
from trainers_rl.rl.sac import SACConfig, SACTrainer
from trainers_rl.rl.trainer import Trainer
from trainers_rl.run_config import EvalConfig
from trainyard_core.config import (
    ConfigError,
    check_resumable,
    file_digest,
    load_config,
    peek_value,
    resume_config,
    save_config,
)
from trainyard_core.io import atomic_directory, atomic_write_text
from trainyard_core.table import print_table
from trainyard_core.tracking import TrackingConfig, make_run_dir, start_wandb

__all__ = [
    "RESUME_FREE", "RESUME_GROW", "STAGE_DONE", "DrivingRunConfig", "EvalStageConfig",
    "RLStageConfig", "preflight", "resolve_config", "run_pipeline", "stage_done"
]

log = logging.getLogger(__name__)

RESUME_FREE = ("resume", "name", "output_dir", "torch_threads", "tracking.*")
"""Settings a resumed run may change: where it is, what it is called, threads and logging.

Device and checkpoint settings are not among them: RL resumes with its checkpoint's own."""
RESUME_GROW = ("rl.ppo.total_timesteps", "rl.sac.total_timesteps")
"""Settings a resumed run may raise: a larger budget continues RL to the new total."""
SOURCES = "config_sources.json"
"""In a run directory: the config files (path, sha256) and overrides the run started from."""

ALGORITHMS = ("ppo", "sac", "none")
STAGE_DONE = "stage.json"
"""In a stage's directory (``demos/``, ``bc/``): the stage finished. Written last, atomically."""
_BEFORE_MARKERS = {
    "demos": ("meta.json",),
    "bc": ("bc_report.json", "model/model.safetensors"),
}
"""What a run from before the markers wrote last in each stage: demos wrote meta.json last
(atomically); cloning wrote its report after the model, so with the weights it is complete."""


@dataclasses.dataclass
class RLStageConfig:
    """RL fine-tuning of the cloned policy (``algorithm: none`` ships behaviour cloning)."""

    algorithm: str = dataclasses.field(default="ppo", metadata={"help": "ppo, sac or none"})
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    sac: SACConfig = dataclasses.field(default_factory=SACConfig)
    eval_every: int = dataclasses.field(
        default=0, metadata={"help": "env steps between evaluations during RL (0 = none)"})
    eval_episodes: int = dataclasses.field(default=32,
                                           metadata={"help": "episodes per evaluation during RL"})
    eval_seed: int = dataclasses.field(
        default=500_000,
        metadata={"help": "first validation seed of evaluations during RL (not the test seeds)"})

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"rl.algorithm must be one of {', '.join(ALGORITHMS)}, got "
                             f"{self.algorithm!r}")
        if self.eval_every < 0 or self.eval_episodes < 1:
            raise ValueError("rl.eval_every must be >= 0 and rl.eval_episodes >= 1")


@dataclasses.dataclass
class EvalStageConfig(EvalConfig):
    """The final closed-loop evaluation, on seeds no training stage used."""

    episodes: int = 100
    video: str = dataclasses.field(default="gif", metadata={"help": "gif, mp4 or none"})
    waypoints: bool = dataclasses.field(
        default=True,
        metadata={"help": "also evaluate the cloned waypoints followed by the controller"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.video not in ("gif", "mp4", "none"):
            raise ValueError(f"eval.video must be gif, mp4 or none, got {self.video!r}")


@dataclasses.dataclass
class DrivingRunConfig:
    """Everything ``make train`` does, in one file (configs/train/driving.yaml)."""

    name: str = "driving"
    output_dir: str = dataclasses.field(default="runs",
                                        metadata={
                                            "help": "parent of the run directory",
                                            "flags": ("--output-dir",)
                                        })
    resume: str = dataclasses.field(
        default="",
        metadata={
            "help": "a run directory to continue on its own config.yaml (finished stages are "
                    "kept). Other settings given with it must equal the run's, except name, "
                    "output_dir, torch_threads and tracking.*, and rl.ppo/sac.total_timesteps, "
                    "which may grow; a --config file the run started from counts as unchanged"
        })
    sim: SimulatorConfig = dataclasses.field(default_factory=SimulatorConfig)
    demos: DemoConfig = dataclasses.field(default_factory=DemoConfig)
    bc: BCTrainingConfig = dataclasses.field(default_factory=BCTrainingConfig)
    rl: RLStageConfig = dataclasses.field(default_factory=RLStageConfig)
    eval: EvalStageConfig = dataclasses.field(default_factory=EvalStageConfig)
    export: bool = dataclasses.field(default=True, metadata={"help": "export ONNX and TorchScript"})
    torch_threads: int = dataclasses.field(
        default=1,
        metadata={
            "help": "torch intra-op threads (0 = torch's default). Small networks gain "
                    "nothing from more, and lose much when another process shares the cores"
        })
    tracking: TrackingConfig = dataclasses.field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {self.torch_threads}")
        train_seeds = max(self.demos.seed + self.demos.num_envs,
                          self.rl.ppo.seed + self.rl.ppo.num_envs,
                          self.rl.sac.seed + self.rl.sac.num_envs)
        if self.eval.seed < train_seeds:
            raise ValueError(f"eval.seed {self.eval.seed} overlaps the training env seeds "
                             f"(below {train_seeds})")
        validation = range(self.rl.eval_seed, self.rl.eval_seed + self.rl.eval_episodes)
        if validation.start < train_seeds or validation.stop > self.eval.seed:
            raise ValueError(f"rl.eval_seed {self.rl.eval_seed}: validation seeds "
                             f"{validation.start}..{validation.stop - 1} must lie between the "
                             f"training seeds (below {train_seeds}) and eval.seed {self.eval.seed}")

    @property
    def algorithm_config(self) -> PPOConfig | SACConfig:
        return self.rl.sac if self.rl.algorithm == "sac" else self.rl.ppo


def _trainer_class(algorithm: str) -> type[Trainer]:
    return SACTrainer if algorithm == "sac" else PPOTrainer


@contextlib.contextmanager
def _stage(name: str, timings: dict[str, float], marker_dir: Path | None = None) -> Iterator[None]:
    """Time a stage and announce it (a run is minutes long; users watch it); with
    ``marker_dir``, mark that directory's stage finished once the block has succeeded."""
    log.info("[%s]", name)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 2)
    if marker_dir is not None:
        marker = {"stage": name, "seconds": timings[name], "finished": time.time()}
        atomic_write_text(marker_dir / STAGE_DONE, json.dumps(marker, indent=2) + "\n")
    log.info("[%s] done in %.1f s", name, timings[name])


def stage_done(stage_dir: Path) -> bool:
    """Whether the stage writing ``stage_dir`` finished (``STAGE_DONE``, or for a run from
    before the markers, what that stage wrote last: see ``_BEFORE_MARKERS``)."""
    if (stage_dir / STAGE_DONE).is_file():
        return True
    last = _BEFORE_MARKERS.get(stage_dir.name)
    return last is not None and all((stage_dir / name).is_file() for name in last)


def _redo(stage_dir: Path) -> Path:
    """Remove what an unfinished stage left (a killed write's temporary files included)."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    return stage_dir


def _resume_dir(resume: str | Path) -> Path:
    run_dir = Path(resume)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"resume: {str(run_dir)!r} is not a run directory of "
                          "`trainers-rl train` (no config.yaml)")
    return run_dir


def _started_from(run_dir: Path) -> list[str]:
    """sha256 of the config files the run started from (none for runs older than the record)."""
    path = run_dir / SOURCES
    if not path.is_file():
        return []
    try:
        return [f["sha256"] for f in json.loads(path.read_text())["files"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"resume: {str(path)!r} is not a record of config sources "
                          f"({exc})") from exc


def resolve_config(cls: type[DrivingRunConfig], files: list[str],
                   overrides: list[str]) -> DrivingRunConfig:
    """The config a ``train`` command line describes: with ``resume``, the run's config.yaml
    is the base and the files and overrides given may not change the run (``resume_config``)."""
    resume = peek_value(cls, "resume", files, overrides)
    if not resume:
        return load_config(cls, files=files, overrides=overrides)
    run_dir = _resume_dir(resume)
    return resume_config(cls,
                         run_dir / "config.yaml",
                         files,
                         overrides,
                         free=RESUME_FREE,
                         grow=RESUME_GROW,
                         same_as_saved=_started_from(run_dir))


def preflight(cfg: DrivingRunConfig) -> list[str]:
    """Check everything the run needs, before any work and without writing; returns what
    was checked, one line each. Raises ``ConfigError`` naming the first missing piece."""
    checked = []
    if cfg.resume:
        run_dir = _resume_dir(cfg.resume)
        saved = run_dir / "config.yaml"
        check_resumable(load_config(DrivingRunConfig, files=[saved]), cfg, saved, RESUME_FREE,
                        RESUME_GROW)
        checked.append(f"resume: {run_dir} is a run directory, the config continues it")
        checked.append(check_writable(run_dir, "run directory"))
    else:
        checked.append(check_writable(cfg.output_dir, "output_dir"))
    if cfg.rl.algorithm != "none":
        # RL fine-tunes the cloned model on the job's env: options that build one do nothing.
        problems = inapplicable_options(cfg.algorithm_config, model_given=True, env_given=True)
        if problems:
            raise ConfigError(f"rl.{cfg.rl.algorithm}: " + "; ".join(problems))
        checked.append(f"rl.{cfg.rl.algorithm}: trains the cloned model (no build options set)")
    if cfg.export:
        versions = require_modules(("onnx", "onnxscript", "onnxruntime"),
                                   EXPORT_EXTRA,
                                   "export: true",
                                   instead="set export=false")
        checked.append(f"export: {versions}")
    else:
        checked.append("export: off (export false)")
    if cfg.sim.backend == "carla":
        version = require_modules(("carla",), carla_extra(), "sim.backend carla")
        checked.append(f"CARLA client: {version} (servers are reached when RL starts)")
    else:
        checked.append(f"CARLA client: not needed (sim.backend {cfg.sim.backend})")
    checked.append(check_tracking(cfg.tracking))
    return checked


def _record_sources(run_dir: Path, config_files: Sequence[str | Path]) -> None:
    files = [{"path": str(f), "sha256": file_digest(f)} for f in config_files]
    atomic_write_text(run_dir / SOURCES, json.dumps({"files": files}, indent=2) + "\n")


def run_pipeline(cfg: DrivingRunConfig, config_files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Run every stage (skipping finished ones when resuming); returns summary.json.

    ``config_files`` are the YAML files ``cfg`` was resolved from: a new run records their
    sha256, so resuming with the same ``--config`` (as ``make train`` passes) is no change.
    Nothing is written before ``preflight`` has passed.
    """
    preflight(cfg)
    if cfg.resume:
        run_dir = _resume_dir(cfg.resume)
    else:
        run_dir = make_run_dir(cfg.output_dir, cfg.name)
        _record_sources(run_dir, config_files)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    # The saved config is the run's, not this invocation's: a copy starts a new run.
    save_config(dataclasses.replace(cfg, resume=""), run_dir / "config.yaml")
    wandb_run = start_wandb(cfg.tracking, run_dir, dataclasses.asdict(cfg), wandb_extra())
    timings: dict[str, float] = {}
    total_start = time.perf_counter()

    demos_dir = run_dir / "demos"
    if not stage_done(demos_dir):
        with _stage("demonstrations", timings, _redo(demos_dir)):
            demo_sim = cfg.sim.as_embedded()
            record_demos(demo_sim, cfg.demos, demos_dir)

    bc_dir = run_dir / "bc"
    if not stage_done(bc_dir):
        with _stage("behaviour cloning", timings, _redo(bc_dir)):
            # SAC reads the control head through tanh; PPO (and shipping the clone) clip it.
            train_bc(
                BCConfig(**dataclasses.asdict(cfg.bc),
                         data_dir=str(demos_dir),
                         output_dir=str(bc_dir),
                         control_activation="tanh" if cfg.rl.algorithm == "sac" else "clip"))
    bc_model = DrivingVLA.from_pretrained(bc_dir / "model").eval()

    report: dict[str, Any] = {"run_dir": str(run_dir)}
    final = bc_model
    if cfg.rl.algorithm != "none":
        with _stage(f"RL fine-tuning ({cfg.rl.algorithm.upper()})", timings):
            # A copy of its own: the trainer writes the trained weights back into the model it
            # is given, and the "bc" rows must stay the cloned policy.
            trainer = _train_rl(cfg, run_dir / "rl", DrivingVLA.from_pretrained(bc_dir / "model"))
        report["rl"] = {
            "algorithm": cfg.rl.algorithm,
            "total_timesteps": int(trainer.model.num_timesteps),
            "train_seconds": round(trainer.train_seconds, 2),
            "steps_per_second": round(trainer.steps_per_second, 1),
        }
        final = trainer.driving_vla().eval()
    with atomic_directory(run_dir / "model", overwrite=True) as tmp:
        final.save_pretrained(tmp)
    final = DrivingVLA.from_pretrained(run_dir / "model").eval()  # what users will load

    with _stage("evaluation", timings):
        rows = _evaluate(cfg, run_dir, final, bc_model)
    report["eval"] = rows

    if cfg.export:
        with _stage("export", timings):
            report["export"] = _export(final, run_dir / "export", cfg.sim)

    history = run_dir / "rl" / "eval_history.jsonl"
    monitor = run_dir / "rl" / "monitor"
    if monitor.is_dir() and any(monitor.glob("*.monitor.csv")):
        plot_training(monitor, history if history.is_file() else None,
                      run_dir / "learning_curve.png",
                      f"{cfg.rl.algorithm.upper()} fine-tuning of DrivingVLA ({cfg.sim.scenario})")
    timings["total"] = round(time.perf_counter() - total_start, 2)
    report["timings_s"] = timings
    atomic_write_text(run_dir / "summary.json", json.dumps(report, indent=2) + "\n")
    if wandb_run is not None:
        wandb_run.finish()
    print_table(
        f"closed loop, {cfg.sim.scenario}: {cfg.eval.episodes} held-out episodes (seeds "
        f"{cfg.eval.seed}..{cfg.eval.seed + cfg.eval.episodes - 1})", [_row(r) for r in rows])
    log.info("run directory: %s", run_dir)
    return report


def _train_rl(cfg: DrivingRunConfig, rl_dir: Path, bc_model: DrivingVLA) -> Trainer:
    alg = cfg.algorithm_config
    env = make_vector_env(alg.num_envs, dataclasses.replace(cfg.sim, seed=alg.seed))
    cls = _trainer_class(cfg.rl.algorithm)
    if (rl_dir / "checkpoints").is_dir():
        trainer = cls.resume(rl_dir, env=env, run_dir=rl_dir)
        log.info("resumed %s at step %d", cfg.rl.algorithm.upper(), trainer.model.num_timesteps)
    else:
        trainer = cls(alg, env=env, model=bc_model, run_dir=rl_dir)
    callbacks: list[BaseCallback] = []
    if cfg.rl.eval_every:

        def validate() -> dict[str, Any]:
            model = trainer.driving_vla()
            was_training = model.training
            model.eval()
            # Always on the embedded simulator: cheap, and CARLA servers are busy training.
            sim = cfg.sim.as_embedded()
            (row,) = evaluate_policies(sim, {"policy": model_policy(model, sim=sim)},
                                       cfg.rl.eval_episodes, cfg.rl.eval_seed)
            model.train(was_training)
            return {k: v for k, v in row.items() if isinstance(v, int | float)}

        record = RecordEvaluation(validate, rl_dir / "eval_history.jsonl")
        callbacks.append(AtRolloutStart(cfg.rl.eval_every, record))
    trainer.train(total_timesteps=alg.total_timesteps,
                  callback=callbacks,
                  tensorboard_dir=rl_dir / "tensorboard" if cfg.tracking.tensorboard else None)
    return trainer


def _evaluate(cfg: DrivingRunConfig, run_dir: Path, final: DrivingVLA,
              bc_model: DrivingVLA) -> list[dict[str, Any]]:
    """The final table: carla-env's one evaluator, the same rows on both backends.

    Embedded: one world per held-out episode in a single batch. CARLA: the training's servers,
    each playing episodes in turn; the autopilot row needs an expert that backend does not
    have (``runnable_on`` leaves it out with a warning), every other row is there.
    """
    sim = cfg.sim
    policies = {"policy": model_policy(final, sim=sim)}
    if cfg.rl.algorithm != "none":
        policies["bc"] = model_policy(bc_model, sim=sim)
    if cfg.eval.waypoints:
        policies["bc-waypoints"] = model_policy(bc_model, mode="waypoints", sim=sim)
    policies["autopilot"] = autopilot_policy()
    policies["random"] = random_policy(cfg.eval.seed)
    policies = runnable_on(sim, policies)
    video = None if cfg.eval.video == "none" else "policy"
    return evaluate_policies(
        sim,
        policies,
        cfg.eval.episodes,
        cfg.eval.seed,
        run_dir,
        video_policy=video,
        video_format=cfg.eval.video if video else "gif",
        num_envs=None if sim.backend == "embedded" else cfg.algorithm_config.num_envs)


def _row(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("policy", "collision_free", "route_completion", "completed", "collisions_per_km",
            "off_road", "lane_invasions", "mean_speed_mps", "mean_abs_jerk")
    return {k: row[k] for k in keep if k in row}


def _export(model: DrivingVLA, out: Path, sim: SimulatorConfig) -> dict[str, Any]:
    """ONNX and TorchScript files, and their largest deviation from PyTorch on real inputs."""
    from carla_env.embedded import EmbeddedVectorEnv
    from driving_vla.export import export_onnx, export_torchscript

    out.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(model, out / "model.onnx")
    script_path = export_torchscript(model, out / "model.pt")
    env = EmbeddedVectorEnv(8, sim.as_embedded())
    obs, _ = env.reset(seed=0)
    inputs = [torch.as_tensor(obs[k]) for k in model.config.observation_keys]
    with torch.no_grad():
        expected = model.act(obs).numpy()
        scripted = torch.jit.load(str(script_path))(*inputs)[0].numpy()
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.asarray(obs[k])
        for i, k in zip(session.get_inputs(), model.config.observation_keys, strict=True)
    }
    onnx_out = session.run(None, feeds)[0]
    return {
        "onnx": str(onnx_path),
        "torchscript": str(script_path),
        "onnx_max_abs_diff": float(np.abs(onnx_out - expected).max()),
        "torchscript_max_abs_diff": float(np.abs(scripted - expected).max()),
    }
