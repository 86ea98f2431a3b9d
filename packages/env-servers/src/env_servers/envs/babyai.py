"""BabyAI levels from ``minigrid``, played in text the way AgentGym presents them.

The agent reads its 7x7 egocentric view as sentences ("There is a red ball 1 2 steps in front
of you and 1 steps to your right.") and acts with AgentGym's high-level actions ("go to red
ball 1", "pickup red ball 1", "toggle and go through green closed door 1", "move forward"),
each expanded into minigrid's primitive actions by a breadth-first planner over the cells it
can see. Task ``data_idx`` is AgentGym's: level ``LEVELS[data_idx % 40]``, seed
``data_idx // 40``, for every ``data_idx >= 0`` (``num_tasks()`` only sizes the listed split),
so an AgentGym split names the same worlds here.

An episode ends as on AgentGym's server (``episode_end="agentgym"``, the default): only when
the level's instruction is met with minigrid's shaped reward ``1 - 0.9 * steps / max_steps``
above 0.5. minigrid's step limit does not end it (the round limit is the client's; the flag
is in ``info["truncated"]``), nor does a late success (reward <= 0.5) or a failed
instruction (reward 0): the agent plays on. ``episode_end="minigrid"`` ends at minigrid's
``terminated or truncated`` instead.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import io
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI-* ids)
import numpy as np
from minigrid.core.constants import COLOR_NAMES, IDX_TO_COLOR, IDX_TO_OBJECT

from env_servers.envs.base import EnvFamily, InvalidAction, StepResult, TaskOutOfRange, TextEnv

__all__ = [
    "LEVELS", "NOT_RECOGNIZED", "NO_CHANGE", "BabyAIEnv", "BabyAIFamily", "BabyAITask", "Routes",
    "Seen", "View", "action_menu", "describe", "parse_action", "plan", "png_rgb", "read_view"
]

# AgentGym's level order (its `all_levels`, 1-based there): data_idx % 40 picks one.
# minigrid retired GoToObjS6-v0 ("a bug in the registry parameters") for v1: the one id changed.
LEVELS: tuple[str, ...] = (
    "BabyAI-GoToRedBallGrey-v0", "BabyAI-GoToRedBall-v0", "BabyAI-GoToRedBallNoDists-v0",
    "BabyAI-GoToObjS6-v1", "BabyAI-GoToLocalS8N7-v0", "BabyAI-GoToObjMazeS7-v0",
    "BabyAI-GoToImpUnlock-v0", "BabyAI-GoToSeqS5R2-v0", "BabyAI-GoToRedBlueBall-v0",
    "BabyAI-GoToDoor-v0", "BabyAI-GoToObjDoor-v0", "BabyAI-Open-v0", "BabyAI-OpenRedDoor-v0",
    "BabyAI-OpenDoorLoc-v0", "BabyAI-OpenRedBlueDoorsDebug-v0", "BabyAI-OpenDoorsOrderN4Debug-v0",
    "BabyAI-Pickup-v0", "BabyAI-UnblockPickup-v0", "BabyAI-PickupLoc-v0",
    "BabyAI-PickupDistDebug-v0", "BabyAI-PickupAbove-v0", "BabyAI-PutNextLocalS6N4-v0",
    "BabyAI-PutNextS7N4Carrying-v0", "BabyAI-Unlock-v0", "BabyAI-UnlockLocalDist-v0",
    "BabyAI-KeyInBox-v0", "BabyAI-UnlockPickupDist-v0", "BabyAI-BlockedUnlockPickup-v0",
    "BabyAI-UnlockToUnlock-v0", "BabyAI-ActionObjDoor-v0", "BabyAI-FindObjS7-v0",
    "BabyAI-KeyCorridorS6R3-v0", "BabyAI-OneRoomS20-v0", "BabyAI-MoveTwoAcrossS8N9-v0",
    "BabyAI-SynthS5R2-v0", "BabyAI-SynthLoc-v0", "BabyAI-SynthSeq-v0", "BabyAI-MiniBossLevel-v0",
    "BabyAI-BossLevel-v0", "BabyAI-BossLevelNoUnlock-v0")

# minigrid's primitive actions
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = 0, 1, 2, 3, 4, 5
_DOOR_STATES = ("open", "closed", "locked")
_SHOWN = ("door", "key", "ball", "box", "goal", "lava")  # what the description lists
_WALKABLE = frozenset({"empty", "floor", "goal"})  # plus open doors; never lava
_CHECK = "check available actions"
# agentenv-babyai's answers to an action outside the menu, and to an empty one
NOT_RECOGNIZED = "The action is not recognized. Please check valid actions."
NO_CHANGE = "No change in state."
_SUCCESS_ABOVE = 0.5  # AgentGym: an episode is done only with a reward above this
EpisodeEnd = Literal["agentgym", "minigrid"]
# Unit moves for headings 0..3 = forward, right, back, left of the pose the plan starts in.
_HEADINGS = ((1, 0), (0, 1), (-1, 0), (0, -1))
# BabyAI's level generator prints "Sampling rejected: ..." to stdout; swallowing that swaps the
# process-wide sys.stdout, so two threads must not do it at once.
_QUIET = threading.Lock()


@dataclasses.dataclass(frozen=True)
class BabyAITask:
    """What ``data_idx`` names: a level and the seed its world is generated from."""

    level: str
    seed: int


@dataclasses.dataclass(frozen=True)
class Seen:
    """One visible object, in the agent's frame: ``forward`` cells ahead, ``right`` to the side."""

    kind: str
    color: str
    state: str  # doors only: open, closed, locked
    forward: int
    right: int
    number: int = 0  # the n-th object of this name, nearest first

    @property
    def name(self) -> str:
        return f"{self.color} {self.state} door" if self.kind == "door" else \
            f"{self.color} {self.kind}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.number}"

    @property
    def cell(self) -> tuple[int, int]:
        return (self.forward, self.right)


@dataclasses.dataclass(frozen=True)
class View:
    """The egocentric view decoded: every visible cell's (type, color, state) and the objects."""

    cells: dict[tuple[int, int], tuple[str, str, str]]
    objects: tuple[Seen, ...]
    carrying: tuple[str, str] | None  # (color, type)

    @functools.cached_property
    def walkable(self) -> frozenset[tuple[int, int]]:
        """Cells the agent may plan through: its own, floors, goals, open doors (never lava)."""
        return frozenset([(0, 0)] + [
            cell for cell, (kind, _, state) in self.cells.items()
            if kind in _WALKABLE or (kind == "door" and state == "open")
        ])

    def front(self) -> tuple[str, str, str]:
        return self.cells.get((1, 0), ("unseen", "", ""))


def read_view(image: np.ndarray, carrying: tuple[str, str] | None) -> View:
    """Decode minigrid's encoded view (``image[col, row]``, row 0 farthest, agent at the bottom
    middle) into the agent's frame; objects sorted nearest first, far rows before near ones and
    left before right among equals (AgentGym's order), then numbered per name."""
    size = image.shape[0]
    grid = image.tolist()  # Python ints: indexing a list is ~10x faster than numpy scalars
    cells: dict[tuple[int, int], tuple[str, str, str]] = {}
    found: list[Seen] = []
    for row in range(size):
        for col in range(size):
            code = grid[col][row]
            kind = IDX_TO_OBJECT[code[0]]
            forward, right = size - 1 - row, col - size // 2
            if kind == "unseen" or (forward, right) == (0, 0):
                continue  # the agent's own cell shows what it carries
            color = IDX_TO_COLOR[code[1]]
            state = _DOOR_STATES[code[2]] if kind == "door" else ""
            cells[(forward, right)] = (kind, color, state)
            if kind in _SHOWN:
                found.append(Seen(kind, color, state, forward, right))
    found.sort(key=lambda s: (s.forward + abs(s.right), -s.forward, s.right))
    counts: dict[str, int] = {}
    numbered = []
    for seen in found:
        counts[seen.name] = counts.get(seen.name, 0) + 1
        numbered.append(dataclasses.replace(seen, number=counts[seen.name]))
    return View(cells, tuple(numbered), carrying)


def _where(seen: Seen) -> str:
    if seen.right == 0:
        return f"right in front of you {seen.forward} steps away."
    side = "right" if seen.right > 0 else "left"
    return f"{seen.forward} steps in front of you and {abs(seen.right)} steps to your {side}."


def describe(view: View) -> str:
    """AgentGym's sentences for a view, spacing included (two spaces after each object): the
    objects (its preamble whenever anything, a wall included, is in sight), the wall or box
    straight ahead, what is carried."""
    if view.objects or any(kind == "wall" for kind, _, _ in view.cells.values()):
        text = "In front of you in this room, you can see several objects: " + "".join(
            f"There is a {s.label} {_where(s)}  " for s in view.objects)
    else:
        text = "You cannot see any objects within sight. "
    text += "The room has walls around you. "
    ahead = [f for (f, r), (kind, _, _) in view.cells.items() if r == 0 and kind in ("wall", "box")]
    if ahead:
        nearest = min(ahead)
        text += f"You are facing a {view.cells[(nearest, 0)][0]} {nearest} steps away. "
    if view.carrying:
        text += f"You are carrying a {view.carrying[0]} {view.carrying[1]}."
    else:
        text += "You are not carrying anything."
    return text


Pose = tuple[int, int, int]  # forward, right, heading


@dataclasses.dataclass(frozen=True)
class Routes:
    """Breadth-first search over poses reachable through visible walkable cells: for every
    cell, the nearest pose facing it and the nearest pose standing on it."""

    parent: dict[Pose, tuple[Pose, int]]
    facing: dict[tuple[int, int], Pose]
    onto: dict[tuple[int, int], Pose]

    def path(self, pose: Pose | None) -> list[int] | None:
        """Primitive actions from the start to ``pose``; None when unreachable."""
        if pose is None:
            return None
        actions: list[int] = []
        while pose in self.parent:
            pose, action = self.parent[pose]
            actions.append(action)
        return actions[::-1]

    def to_face(self, cell: tuple[int, int]) -> list[int] | None:
        return self.path(self.facing.get(cell))

    def to_stand_on(self, cell: tuple[int, int]) -> list[int] | None:
        return self.path(self.onto.get(cell))


def plan(view: View) -> Routes:
    """Shortest plans from the agent's pose; moves in the order forward, left, right, so ties
    resolve the same way every time."""
    walkable = view.walkable
    parent: dict[Pose, tuple[Pose, int]] = {}
    facing: dict[tuple[int, int], Pose] = {}
    onto: dict[tuple[int, int], Pose] = {}
    start: Pose = (0, 0, 0)
    seen = {start}
    frontier = [start]
    while frontier:
        following = []
        for pose in frontier:
            f, r, h = pose
            df, dr = _HEADINGS[h]
            facing.setdefault((f + df, r + dr), pose)
            onto.setdefault((f, r), pose)
            for action, nxt in ((FORWARD, (f + df, r + dr, h)), (LEFT, (f, r, (h - 1) % 4)),
                                (RIGHT, (f, r, (h + 1) % 4))):
                if nxt in seen or (nxt[0], nxt[1]) not in walkable:
                    continue
                seen.add(nxt)
                parent[nxt] = (pose, action)
                following.append(nxt)
        frontier = following
    return Routes(parent, facing, onto)


def action_menu(view: View) -> tuple[dict[str, list[int]], dict[str, str]]:
    """The actions available now (label -> primitives, AgentGym's order and names) and why
    some well-formed actions are not (label -> the sentence the agent reads instead)."""
    menu: dict[str, list[int]] = {"turn left": [LEFT], "turn right": [RIGHT]}
    why: dict[str, str] = {}
    routes = plan(view)
    front_kind, front_color, front_state = view.front()
    if front_kind in ("empty", "floor", "goal", "lava") or (front_kind == "door" and
                                                            front_state == "open"):
        menu["move forward"] = [FORWARD]
    else:
        why["move forward"] = "There is a barrier in front of you, you can't move forward."
    for seen in view.objects:
        if seen.kind not in ("key", "ball", "box"):
            continue
        action = f"pickup {seen.label}"
        path = routes.to_face(seen.cell)
        if view.carrying:
            why[action] = (f"You cannot pickup {seen.label}, as you are already carrying a "
                           f"{view.carrying[0]} {view.carrying[1]}.")
        elif path is None:
            why[action] = f"You cannot pickup {seen.label}, as there is no path leading to it."
        else:
            menu[action] = [*path, PICKUP]
    if view.carrying and front_kind == "empty":
        menu["drop"] = [DROP]
    elif view.carrying:
        why["drop"] = "You cannot drop the object, as there is already an object in front of you."
    else:
        why["drop"] = "You cannot drop the object, as you are not carrying anything."
    for seen in view.objects:
        if seen.kind != "door":
            continue
        if seen.state == "open":
            path = routes.to_stand_on(seen.cell)
            if path is None:
                why[f"go through {seen.label}"] = (f"You cannot go through {seen.label}, as there "
                                                   "is no path leading to it.")
            else:
                menu[f"go through {seen.label}"] = path
            continue
        action = f"toggle and go through {seen.label}"
        why[f"go through {seen.label}"] = (f"You cannot go through {seen.label}, as it is "
                                           f"{seen.state}. You should toggle it first.")
        if seen.state == "locked" and view.carrying != (seen.color, "key"):
            why[action] = (f"You cannot toggle and go through {seen.label}, as you are not "
                           f"carrying a {seen.color} key.")
            continue
        path = routes.to_face(seen.cell)
        if path is None:
            why[action] = (f"You cannot toggle and go through {seen.label}, as there is no path "
                           "leading to it.")
        else:
            menu[action] = [*path, TOGGLE, FORWARD]
    locked_out = front_state == "locked" and view.carrying != (front_color, "key")
    if front_kind == "box" or (front_kind == "door" and not locked_out):
        menu["toggle"] = [TOGGLE]
    else:
        why["toggle"] = "There is nothing in front of you that you can toggle."
    for seen in view.objects:
        if seen.kind == "goal":
            path = routes.to_stand_on(seen.cell)
            if path is not None and "go to goal" not in menu:
                menu["go to goal"] = path
            elif "go to goal" not in menu:
                why["go to goal"] = "You cannot go to the goal, as there is no path leading to it."
    for seen in view.objects:
        if seen.kind == "goal":
            continue
        path = routes.to_face(seen.cell)
        if path is None:
            why[f"go to {seen.label}"] = (f"You cannot go to {seen.label}, as there is no path "
                                          "leading to it.")
        else:
            menu[f"go to {seen.label}"] = path
    menu[_CHECK] = []
    return menu, why


_COLOR = "|".join(COLOR_NAMES)
_OBJECT = rf"(?:{_COLOR}) (?:(?:open|closed|locked) )?(?:door|key|ball|box|goal|lava)"
_GRAMMAR = [
    (re.compile(r"turn (left|right)"), "turn {0}"),
    (re.compile(r"(?:move|go) forward"), "move forward"),
    (re.compile(rf"(?:pickup|pick up) ({_OBJECT})(?: (\d+))?"), "pickup {0} {1}"),
    (re.compile(r"drop"), "drop"),
    (re.compile(r"toggle"), "toggle"),
    (re.compile(rf"toggle and go through ({_OBJECT})(?: (\d+))?"), "toggle and go through {0} {1}"),
    (re.compile(rf"go through ({_OBJECT})(?: (\d+))?"), "go through {0} {1}"),
    (re.compile(r"go to (?:the )?(?:green )?goal(?: 1)?"), "go to goal"),
    (re.compile(rf"go to ({_OBJECT})(?: (\d+))?"), "go to {0} {1}"),
]


def parse_action(text: str) -> str:
    """The canonical label of an action in AgentGym's grammar (case, spacing, a final period and
    a missing number forgiven); ``InvalidAction`` naming the grammar when it is not one."""
    words = " ".join(text.lower().split()).rstrip(".").strip()
    if not words:
        raise InvalidAction("action is empty")
    if "check" in words:  # AgentGym: any action mentioning "check" lists the actions
        return _CHECK
    for pattern, template in _GRAMMAR:
        match = pattern.fullmatch(words)
        if match:
            groups = [g if g is not None else "1" for g in match.groups()]
            return template.format(*groups)
    raise InvalidAction(f"unknown BabyAI action {text[:80]!r}; expected one of: turn left, "
                        "turn right, move forward, pickup <color> <object> <n>, drop, toggle, "
                        "go to <color> <object> <n>, go to goal, go through <color> open door "
                        "<n>, toggle and go through <color> <state> door <n>, "
                        "check available actions")


def _match_ignoring_state(label: str, menu: dict[str, list[int]]) -> str | None:
    # "go through red door 1" names "go through red open door 1" when only one door fits.
    def strip(text: str) -> str:
        return re.sub(r" (?:open|closed|locked) door", " door", text)

    hits = [name for name in menu if strip(name) == strip(label)]
    return hits[0] if len(hits) == 1 else None


class BabyAIEnv(TextEnv):
    """One BabyAI world; ``reset`` builds the level's env (kept while the level repeats)."""

    def __init__(self, family: BabyAIFamily) -> None:
        self._family = family
        self._env: Any = None  # gymnasium's BabyAI env, unwrapped
        self._level = ""
        self._image: np.ndarray | None = None
        self._menu: dict[str, list[int]] = {}
        self._why: dict[str, str] = {}
        self._last = ""
        self._score = 0.0
        self.task: BabyAITask | None = None

    @property
    def goal(self) -> str:
        return str(self._env.mission) if self._env is not None else ""

    def reset(self, data_idx: int) -> str:
        task = self._family.task(data_idx)
        if task.level != self._level:
            self.close()
            self._env = gym.make(task.level, disable_env_checker=True).unwrapped
            self._level = task.level
        with _QUIET, contextlib.redirect_stdout(io.StringIO()):
            obs, _ = self._env.reset(seed=task.seed)
        self.task = task
        self._score = 0.0
        self._last = self._look(obs["image"])
        return self.observation()

    def _look(self, image: np.ndarray) -> str:
        carried = self._env.carrying
        view = read_view(image, (carried.color, carried.type) if carried is not None else None)
        self._image = image
        self._menu, self._why = action_menu(view)
        return describe(view)

    def _actions(self) -> str:
        return "\nAvailable actions: [" + ", ".join(f'"{a}"' for a in self._menu) + "]"

    def observation(self) -> str:
        return f"Your goal: {self.goal}\n{self._last}{self._actions()}"

    def step(self, action: str) -> StepResult:
        if self._env is None:
            raise RuntimeError("step before reset")  # the server answers 409 before this
        label = parse_action(action)
        if label not in self._menu:
            label = _match_ignoring_state(label, self._menu) or label
        if label == _CHECK:
            self._last = "You can take the following actions: " + ", ".join(self._menu)
        elif label not in self._menu:
            self._last = self._why.get(label, NOT_RECOGNIZED)
        else:
            return self._execute(label)
        return StepResult(self._last + self._actions(), 0.0, False, self._score, {"action": label})

    def _execute(self, label: str) -> StepResult:
        agentgym = self._family.episode_end == "agentgym"
        reward, terminated, truncated = 0.0, False, False
        obs: dict[str, Any] = {"image": self._image}
        for primitive in self._menu[label]:
            before = (self._env.agent_pos, self._env.agent_dir, self._env.carrying, obs["image"])
            obs, r, terminated, truncated, _ = self._env.step(primitive)
            reward += float(r)
            # The instruction's verdict ends the macro action. AgentGym's server plays the rest
            # of it and keeps only the last primitive's reward, which loses the success of
            # "toggle and go through" on the Open levels (the toggle succeeds, the move scores
            # 0): that is not copied. Truncation ends it only where it ends the episode.
            if terminated or (truncated and not agentgym):
                break
            after = (self._env.agent_pos, self._env.agent_dir, self._env.carrying)
            if after == before[:3] and np.array_equal(obs["image"], before[3]):
                break  # the primitive did nothing (blocked): stop the macro action here
        self._score += reward
        text = self._look(obs["image"])
        if terminated and reward > 0:
            text += "\n The task is completed."
        elif terminated:
            text += "\n The task has failed."
        elif truncated and not agentgym:
            text += "\n The step limit of this task is reached."
        # agentenv-babyai: done only on a success worth more than 0.5
        done = (terminated and reward > _SUCCESS_ABOVE) if agentgym else (terminated or truncated)
        self._last = text
        info = {"action": label, "env_steps": self._env.step_count}
        info.update(terminated=terminated, truncated=truncated)
        return StepResult(text + self._actions(), reward, done, self._score, info)

    def invalid_action_observation(self, action: str, reason: str) -> str:
        """agentenv-babyai's answer: "No change in state." to an empty action, "The action is
        not recognized. Please check valid actions." to any other it cannot parse, then the
        action list; it becomes the current observation, as there."""
        if self._env is None:
            raise RuntimeError("step before reset")  # the server answers 409 before this
        self._last = NO_CHANGE if not action.strip() else NOT_RECOGNIZED
        return self._last + self._actions()

    def render(self) -> str:
        """The whole grid as AgentGym's ``POST /render`` returns it: a PNG as a
        ``data:image/png;base64,...`` URL, drawn by minigrid (``get_frame``: the agent's view
        highlighted, ``tile_size`` pixels per cell), RGB, 8 bits."""
        if self._env is None:
            raise RuntimeError("render before reset")  # the server answers 409 before this
        frame = self._env.get_frame(highlight=self._env.highlight, tile_size=self._env.tile_size)
        return "data:image/png;base64," + base64.b64encode(png_rgb(frame)).decode("ascii")

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._level = ""


def png_rgb(image: np.ndarray) -> bytes:
    """A ``(height, width, 3)`` uint8 image as PNG bytes (zlib and the PNG framing: no
    imaging library needed for one picture per request)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"png_rgb needs a (height, width, 3) image, got shape {image.shape}")
    height, width = image.shape[:2]
    pixels = np.ascontiguousarray(image, np.uint8).reshape(height, width * 3)
    rows = np.hstack([np.zeros((height, 1), np.uint8), pixels])  # filter 0 (none) per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
            chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


class BabyAIFamily(EnvFamily):
    """The 40 BabyAI levels AgentGym serves: ``seeds_per_level`` worlds each are listed
    (``num_tasks``), and any ``data_idx >= 0`` names a world, as on AgentGym's server.
    ``episode_end``: ``"agentgym"`` (default) or ``"minigrid"``, see the module's docstring."""

    name: ClassVar[str] = "babyai"
    blocking: ClassVar[bool] = False  # a step is ~0.3 ms of Python: threads only add overhead

    def __init__(self, seeds_per_level: int = 1000, episode_end: EpisodeEnd = "agentgym") -> None:
        if seeds_per_level < 1:
            raise ValueError(f"seeds_per_level must be >= 1, got {seeds_per_level}")
        if episode_end not in ("agentgym", "minigrid"):
            raise ValueError(f"episode_end must be 'agentgym' or 'minigrid', got {episode_end!r}")
        self.seeds_per_level = seeds_per_level
        self.episode_end = episode_end

    def num_tasks(self) -> int:
        return len(LEVELS) * self.seeds_per_level

    def check_data_idx(self, data_idx: int) -> None:
        """Every ``data_idx >= 0``: AgentGym's server maps any of them to a level and a seed."""
        if data_idx < 0:
            raise TaskOutOfRange(f"data_idx {data_idx} is out of range: babyai takes any "
                                 f"data_idx >= 0 (it lists 0..{self.num_tasks() - 1})")

    def task(self, data_idx: int) -> BabyAITask:
        """AgentGym's mapping: level ``data_idx % 40``, seed ``data_idx // 40``."""
        self.check_data_idx(data_idx)
        return BabyAITask(LEVELS[data_idx % len(LEVELS)], data_idx // len(LEVELS))

    def tasks(self) -> Iterator[BabyAITask]:
        """Every listed task in ``data_idx`` order."""
        return (self.task(i) for i in range(self.num_tasks()))

    def create(self) -> BabyAIEnv:
        return BabyAIEnv(self)
