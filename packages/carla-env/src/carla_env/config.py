"""``SimulatorConfig``: the one description of a driving simulation, whatever its backend."""

from __future__ import annotations

import dataclasses
import math
import os

from carla_env.reward import RewardConfig

__all__ = [
    "BACKENDS", "CARLA_TOWNS", "CARLA_WEATHERS", "MAX_SUBSTEPS", "MAX_SUBSTEP_DT",
    "OBSERVATION_KEYS", "SCENARIOS", "Scenario", "SimulatorConfig", "env_carla_host",
    "env_carla_port"
]

BACKENDS = ("embedded", "carla")
OBSERVATION_KEYS = ("camera", "state", "neighbors")
# CARLA's documented physics sub-stepping bounds: at most 16 sub-steps, each below 1/60 s
# (ideally 0.01 s), and fixed_delta_seconds <= max_substep_delta_time * max_substeps.
MAX_SUBSTEPS = 16
MAX_SUBSTEP_DT = 1.0 / 60.0
# Maps shipped with CARLA 0.9.16 (the "_Opt" layered variants load the same towns).
CARLA_TOWNS = ("Town01", "Town02", "Town03", "Town04", "Town05", "Town06", "Town07", "Town10HD",
               "Town11", "Town12", "Town13", "Town15")
# carla.WeatherParameters presets.
CARLA_WEATHERS = ("ClearNoon", "CloudyNoon", "WetNoon", "WetCloudyNoon", "MidRainyNoon",
                  "HardRainNoon", "SoftRainNoon", "ClearSunset", "CloudySunset", "WetSunset",
                  "WetCloudySunset", "MidRainSunset", "HardRainSunset", "SoftRainSunset",
                  "ClearNight", "CloudyNight", "WetNight", "WetCloudyNight", "SoftRainNight",
                  "MidRainyNight", "HardRainNight")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A driving situation: which map, how fast, what weather and light."""

    map: str
    lanes: int
    lane_width: float
    speed_limit: float  # m/s
    route_length: float  # m
    cross_traffic: bool
    friction: float  # 1.0 dry asphalt; rain lowers it
    light: float  # camera brightness; night dims it
    carla_weather: str
    carla_town: str


SCENARIOS = {
    "highway": Scenario("highway", 3, 3.75, 30.0, 800.0, False, 1.0, 1.0, "ClearNoon", "Town04"),
    "urban": Scenario("urban", 2, 3.5, 13.9, 400.0, True, 1.0, 1.0, "ClearNoon", "Town10HD"),
    "night": Scenario("urban", 2, 3.5, 13.9, 400.0, True, 1.0, 0.35, "ClearNight", "Town10HD"),
    "rain": Scenario("highway", 3, 3.75, 30.0, 800.0, False, 0.6, 0.8, "HardRainNoon", "Town04"),
}


def env_carla_host() -> str:
    """``$CARLA_HOST`` (seed 001's compose sets it), else localhost."""
    return os.environ.get("CARLA_HOST") or "localhost"


def env_carla_port() -> int:
    """``$CARLA_PORT``, else 2000; a value that is not a port is refused by name."""
    raw = os.environ.get("CARLA_PORT") or "2000"
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise ValueError(f"environment variable CARLA_PORT must be a port number in 1..65535, "
                         f"got {raw!r}")
    return port


@dataclasses.dataclass
class SimulatorConfig:
    """Everything that defines a driving environment, on either backend.

    The connection and timing names are CARLABridge's (``carla_host``, ``physics_dt``, …);
    ``backend`` picks the embedded simulator (default, no server) or a CARLA server.
    ``carla_host``/``carla_port`` default to ``$CARLA_HOST``/``$CARLA_PORT``; a value given
    explicitly (argument, YAML, flag) wins. Towns are CARLA's: naming one with the embedded
    backend is refused rather than ignored.
    """

    backend: str = dataclasses.field(default="embedded",
                                     metadata={"help": "embedded (no server) or carla"})
    scenario: str = dataclasses.field(default="highway",
                                      metadata={"help": "highway, urban, night or rain"})
    map: str = dataclasses.field(
        default="", metadata={"help": "embedded map: highway, ring or urban ('' = scenario's)"})
    observation_keys: list[str] = dataclasses.field(
        default_factory=lambda: ["state", "neighbors"],
        metadata={"help": "any of camera, state, neighbors"})
    traffic_density: float = dataclasses.field(
        default=12.0, metadata={"help": "traffic cars per km per lane (0 = empty road)"})
    max_vehicles: int = dataclasses.field(default=16,
                                          metadata={"help": "traffic cars simulated per world"})
    neighbors: int = dataclasses.field(default=8,
                                       metadata={"help": "nearest cars in the observation"})
    max_episode_steps: int = 1000
    route_length: float | None = dataclasses.field(
        default=None, metadata={"help": "metres of route per episode (None = scenario's)"})
    map_seed: int = dataclasses.field(default=0, metadata={"help": "seed of the map's routes"})
    num_routes: int = 64
    # CARLA connection (CARLABridge names)
    carla_host: str = dataclasses.field(
        default_factory=env_carla_host,
        metadata={"help": "CARLA server host (default: $CARLA_HOST, else localhost)"})
    carla_port: int = dataclasses.field(
        default_factory=env_carla_port,
        metadata={"help": "CARLA RPC port (default: $CARLA_PORT, else 2000)"})
    carla_town: str | None = dataclasses.field(
        default=None, metadata={"help": "CARLA map, backend carla only "
                                        "(None = scenario's)"})
    carla_weather: str | None = dataclasses.field(
        default=None, metadata={"help": "carla.WeatherParameters preset (None = scenario's)"})
    carla_timeout: float = dataclasses.field(default=10.0,
                                             metadata={"help": "seconds to wait for the server"})
    traffic_manager_port: int = 8000
    restart_server: bool = dataclasses.field(
        default=False, metadata={"help": "restart a CARLA server that dies mid-episode"})
    # Rendering (CARLABridge names)
    render: bool = dataclasses.field(
        default=True,
        metadata={
            "help": "draw frames (camera observations, render_mode='rgb_array' videos). "
                    "False: a CARLA server runs with no_rendering_mode (faster), and a camera "
                    "observation or rgb_array rendering is refused on both backends"
        })
    headless: bool = dataclasses.field(
        default=True,
        metadata={
            "help": "no window. False: the CARLA server's window (its spectator camera) "
                    "follows the ego car; the embedded simulator never opens a window, so "
                    "there it changes nothing (save videos with render_mode='rgb_array')"
        })
    # Timing
    fps: int = dataclasses.field(default=10, metadata={"help": "frame rate of saved videos"})
    physics_dt: float = dataclasses.field(default=0.01,
                                          metadata={"help": "physics step in seconds"})
    control_dt: float = dataclasses.field(default=0.1,
                                          metadata={"help": "seconds between agent actions"})
    # Camera
    image_width: int = 64
    image_height: int = 64
    seed: int = 0
    expert_action: bool = dataclasses.field(
        default=False,
        metadata={
            "help": "put the expert's action for each observation in info['expert_action'] "
                    "(embedded backend only; costs an autopilot evaluation per step)"
        })
    reward: RewardConfig = dataclasses.field(
        default_factory=RewardConfig,
        metadata={"help": "reward weights (seed 001's keys speed_weight, … accepted)"})

    def __post_init__(self) -> None:
        if isinstance(self.reward, dict):  # SimulatorConfig(reward={"speed_weight": 1.0})
            try:
                self.reward = RewardConfig(**self.reward)
            except TypeError as exc:
                raise ValueError(f"reward: {exc}") from exc
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, "
                             f"got {self.scenario!r}")
        if self.map not in ("", "highway", "ring", "urban"):
            raise ValueError(f"map must be highway, ring, urban or '', got {self.map!r}")
        unknown = [k for k in self.observation_keys if k not in OBSERVATION_KEYS]
        if unknown or not self.observation_keys:
            raise ValueError(f"observation_keys must be a non-empty subset of "
                             f"{', '.join(OBSERVATION_KEYS)}, got unknown {unknown}")
        if len(set(self.observation_keys)) != len(self.observation_keys):
            raise ValueError(f"observation_keys has duplicates: {self.observation_keys}")
        if self.carla_town is not None and self.carla_town not in CARLA_TOWNS:
            raise ValueError(f"carla_town must be one of {', '.join(CARLA_TOWNS)}, "
                             f"got {self.carla_town!r}")
        if self.carla_town is not None and self.backend != "carla":
            raise ValueError(f"carla_town={self.carla_town!r} names a CARLA map, and only "
                             f"backend='carla' (a CARLA server) loads towns; the {self.backend} "
                             f"backend drives its own maps (map: highway, ring or urban, or "
                             f"scenario). Set backend='carla' or leave carla_town unset")
        if self.carla_weather is not None and self.carla_weather not in CARLA_WEATHERS:
            raise ValueError(f"carla_weather must be a carla.WeatherParameters preset "
                             f"({', '.join(CARLA_WEATHERS[:4])}, …), got {self.carla_weather!r}")
        if self.expert_action and self.backend != "embedded":
            raise ValueError(f"expert_action=true needs a backend with an expert (embedded); "
                             f"the {self.backend} backend has none (the carla package ships no "
                             f"agents.navigation): set expert_action=false")
        if not self.render and "camera" in self.observation_keys:
            raise ValueError("render=False draws no frames, but observation_keys has camera: "
                             "set render=True or drop the camera observation")
        for name in ("carla_port", "traffic_manager_port"):
            if not 0 < getattr(self, name) < 65536:
                raise ValueError(f"{name} must be in 1..65535, got {getattr(self, name)}")
        positive = ("carla_timeout", "image_width", "image_height", "max_episode_steps", "fps",
                    "num_routes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("traffic_density", "max_vehicles", "neighbors"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.route_length is not None and self.route_length < 50:
            raise ValueError(f"route_length must be >= 50 m, got {self.route_length}")
        self._check_timing()

    def _check_timing(self) -> None:
        if self.physics_dt <= 0 or self.control_dt <= 0:
            raise ValueError(f"physics_dt and control_dt must be > 0, got "
                             f"{self.physics_dt} and {self.control_dt}")
        if self.physics_dt > self.control_dt + 1e-12:
            raise ValueError(f"physics_dt ({self.physics_dt:.4g} s) must not exceed control_dt "
                             f"({self.control_dt:.4g} s)")
        if self.physics_dt > MAX_SUBSTEP_DT + 1e-9:
            raise ValueError(f"physics_dt {self.physics_dt:.4g} s exceeds CARLA's largest "
                             f"sub-step of {MAX_SUBSTEP_DT:.4g} s")
        ratio = self.control_dt / self.physics_dt
        if not math.isclose(ratio, round(ratio), rel_tol=0, abs_tol=1e-6):
            raise ValueError(f"control_dt ({self.control_dt:.4g} s) must be a whole multiple of "
                             f"physics_dt ({self.physics_dt:.4g} s)")
        if self.substeps > MAX_SUBSTEPS:
            raise ValueError(
                f"control_dt {self.control_dt:.4g} s needs {self.substeps} physics "
                f"steps of {self.physics_dt:.4g} s; CARLA allows at most {MAX_SUBSTEPS}")

    def as_embedded(self) -> SimulatorConfig:
        """This config on the embedded backend (demonstrations, evaluation, export of a CARLA
        run): the CARLA-only town is dropped, the scenario still picks the map."""
        return dataclasses.replace(self, backend="embedded", carla_town=None)

    @property
    def substeps(self) -> int:
        """Physics steps per control step."""
        return max(1, round(self.control_dt / self.physics_dt))

    @property
    def scenario_spec(self) -> Scenario:
        return SCENARIOS[self.scenario]

    @property
    def town(self) -> str:
        return self.carla_town or self.scenario_spec.carla_town

    @property
    def weather(self) -> str:
        return self.carla_weather or self.scenario_spec.carla_weather
