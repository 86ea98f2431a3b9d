"""The one list of trainyard's packages, derived from ``packages/*/pyproject.toml``.

    python3 ci/packages.py names                 # every package, dependencies first
    python3 ci/packages.py images                # the packages that have an image
    python3 ci/packages.py install-args          # `-e ./packages/<name>[dev extras]` for each
    python3 ci/packages.py closure PACKAGE       # PACKAGE and the packages it needs, in order
    python3 ci/packages.py requirement PACKAGE --root DIR   # DIR/PACKAGE[image extras]
    python3 ci/packages.py dockerfile PACKAGE    # the Dockerfile its image builds from

Why: the Makefile, the noxfile, the tests and the image builds each used to list the packages
and their extras by hand, and a package added to one list was missing from the others. Every
consumer now reads this module, which reads only the pyprojects. Stdlib only, so the system
``python3`` runs it before any venv exists (``make setup``) and inside an image build.

What is not derivable from ``[project]`` lives in each pyproject's ``[tool.trainyard]`` table:

    [tool.trainyard]
    dev-extras = ["carla"]        # extras `make setup` and nox install (what the tests use)
    image.extras = ["carla"]      # extras the package's image installs
    image.dockerfile = "docker/env-servers.Dockerfile"   # optional; default PACKAGE_DOCKERFILE
    # or `image = false` for a package without an image of its own (core)

Every install of our packages is from a local path: inter-package requirements name
``trainyard-<name> @ {root:parent:uri}/<name>`` (``carla-env`` and ``trainyard`` on PyPI are
strangers' packages), and every argument this module hands out is a path, never a bare name.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DOCKERFILE = "docker/package.Dockerfile"
# Our distributions are "trainyard-<folder>"; a requirement's name is its leading word.
_PREFIX = "trainyard-"
_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class PackagesError(Exception):
    """A pyproject that does not say what this module needs; the message names the file."""


@dataclasses.dataclass(frozen=True)
class Package:
    """One package of ``packages/``, as its pyproject declares it."""

    folder: str  # "carla-env": the directory, the image name and the CLI's usual name
    name: str  # "trainyard-carla-env": the distribution
    import_name: str  # "carla_env"
    path: Path  # packages/carla-env
    extras: tuple[str, ...]  # every optional-dependency group it declares
    depends: tuple[str, ...]  # folders of the trainyard packages it requires (extras included)
    scripts: tuple[str, ...]  # its console commands
    dev_extras: tuple[str, ...]
    image_extras: tuple[str, ...] | None  # None: no image of its own
    dockerfile: str | None  # relative to the repository root; None without an image

    @property
    def has_image(self) -> bool:
        return self.image_extras is not None

    def spec(self, extras: Sequence[str], root: str = "./packages") -> str:
        """``root/folder[extras]``: a path, so an installer never looks the name up on PyPI."""
        suffix = f"[{','.join(extras)}]" if extras else ""
        return f"{root.rstrip('/')}/{self.folder}{suffix}"


def _string_list(value: Any, where: str, pyproject: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PackagesError(f"{pyproject}: {where} must be a list of strings, got {value!r}")
    return tuple(value)


def _requirement_name(requirement: str, pyproject: Path) -> str:
    match = _REQUIREMENT_NAME.match(requirement)
    if not match:
        raise PackagesError(f"{pyproject}: requirement {requirement!r} has no package name")
    return match.group(1).lower().replace("_", "-")


def _trainyard_table(
        data: dict[str, Any], pyproject: Path,
        extras: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...] | None, str | None]:
    """(dev extras, image extras or None, Dockerfile or None) from ``[tool.trainyard]``."""
    table = data.get("tool", {}).get("trainyard")
    if not isinstance(table, dict):
        raise PackagesError(
            f"{pyproject}: no [tool.trainyard] table: expected `dev-extras = [...]` and "
            f"`image.extras = [...]` (or `image = false`), see ci/packages.py")
    unknown = set(table) - {"dev-extras", "image"}
    if unknown:
        raise PackagesError(f"{pyproject}: [tool.trainyard] has unknown keys {sorted(unknown)}: "
                            f"expected dev-extras and image")
    if "dev-extras" not in table:
        raise PackagesError(f"{pyproject}: [tool.trainyard] has no dev-extras: expected a list "
                            f"of the extras the tests use ([] for none)")
    dev = _string_list(table["dev-extras"], "[tool.trainyard] dev-extras", pyproject)
    image = table.get("image")
    if image is False:
        image_extras, dockerfile = None, None
    elif isinstance(image, dict):
        unknown = set(image) - {"extras", "dockerfile"}
        if unknown or "extras" not in image:
            raise PackagesError(f"{pyproject}: [tool.trainyard] image must have `extras` and may "
                                f"have `dockerfile`, got keys {sorted(image)}")
        image_extras = _string_list(image["extras"], "[tool.trainyard] image.extras", pyproject)
        dockerfile = image.get("dockerfile", PACKAGE_DOCKERFILE)
        if not isinstance(dockerfile, str) or not dockerfile.endswith("Dockerfile"):
            raise PackagesError(f"{pyproject}: [tool.trainyard] image.dockerfile must be a "
                                f"Dockerfile's path from the repository root, got {dockerfile!r}")
    else:
        raise PackagesError(f"{pyproject}: [tool.trainyard] image must be a table with `extras` "
                            f"or `false`, got {image!r}")
    for extra in (*dev, *(image_extras or ())):
        if extra not in extras:
            raise PackagesError(f"{pyproject}: [tool.trainyard] names extra {extra!r}, which "
                                f"[project.optional-dependencies] does not declare "
                                f"(it declares {sorted(extras)})")
    return dev, image_extras, dockerfile


def read_package(pyproject: Path, folders: set[str]) -> Package:
    """One package from its pyproject; ``folders`` are every package's folder (for depends)."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PackagesError(f"{pyproject}: not valid TOML: {exc}") from exc
    project = data.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("name"), str):
        raise PackagesError(f"{pyproject}: no [project] table with a name")
    folder = pyproject.parent.name
    if project["name"] != _PREFIX + folder:
        raise PackagesError(f"{pyproject}: [project] name is {project['name']!r}: expected "
                            f"{_PREFIX + folder!r} (the folder's name with {_PREFIX!r} before it)")
    wheel = data.get("tool", {}).get("hatch", {}).get("build", {}).get("targets",
                                                                       {}).get("wheel",
                                                                               {}).get("packages")
    if not (isinstance(wheel, list) and len(wheel) == 1 and isinstance(wheel[0], str)):
        raise PackagesError(f"{pyproject}: [tool.hatch.build.targets.wheel] packages must name "
                            f"one source folder, e.g. [\"src/{folder.replace('-', '_')}\"]")
    optional = project.get("optional-dependencies", {})
    extras = tuple(optional)
    requirements = list(project.get("dependencies", []))
    for group in optional.values():
        requirements += group
    depends: list[str] = []
    for requirement in requirements:
        name = _requirement_name(requirement, pyproject)
        dep = name.removeprefix(_PREFIX)
        if name.startswith(_PREFIX) and dep in folders and dep != folder and dep not in depends:
            depends.append(dep)
    dev, image_extras, dockerfile = _trainyard_table(data, pyproject, extras)
    return Package(folder=folder,
                   name=project["name"],
                   import_name=Path(wheel[0]).name,
                   path=pyproject.parent,
                   extras=extras,
                   depends=tuple(depends),
                   scripts=tuple(project.get("scripts", {})),
                   dev_extras=dev,
                   image_extras=image_extras,
                   dockerfile=dockerfile)


def _install_order(packages: dict[str, Package]) -> list[Package]:
    """Dependencies before dependants; among the ready ones, by name (a stable order)."""
    ordered: list[Package] = []
    done: set[str] = set()
    while len(ordered) < len(packages):
        ready = sorted(
            name for name, p in packages.items() if name not in done and set(p.depends) <= done)
        if not ready:
            stuck = sorted(set(packages) - done)
            raise PackagesError(f"the trainyard dependencies of {stuck} form a cycle")
        ordered.append(packages[ready[0]])
        done.add(ready[0])
    return ordered


def load(root: Path = ROOT) -> list[Package]:
    """Every package under ``root/packages``, dependencies first."""
    pyprojects = sorted((root / "packages").glob("*/pyproject.toml"))
    if not pyprojects:
        raise PackagesError(f"{root / 'packages'}: no */pyproject.toml")
    folders = {p.parent.name for p in pyprojects}
    return _install_order({p.parent.name: read_package(p, folders) for p in pyprojects})


def by_folder(packages: Sequence[Package]) -> dict[str, Package]:
    return {p.folder: p for p in packages}


def closure(packages: Sequence[Package], folder: str) -> list[Package]:
    """``folder`` and every trainyard package it needs, dependencies first."""
    table = by_folder(packages)
    if folder not in table:
        raise PackagesError(f"package {folder!r}: expected one of {', '.join(table)}")
    needed = {folder}
    stack = [folder]
    while stack:
        for dep in table[stack.pop()].depends:
            if dep not in needed:
                needed.add(dep)
                stack.append(dep)
    return [p for p in packages if p.folder in needed]


def install_args(packages: Sequence[Package], root: str = "./packages") -> list[str]:
    """``-e root/<folder>[dev extras]`` for each package: what make setup and nox install."""
    args: list[str] = []
    for package in packages:
        args += ["-e", package.spec(package.dev_extras, root)]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root",
                        default="./packages",
                        help="the folder holding the packages in printed paths (./packages)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("names", help="every package, dependencies first")
    sub.add_parser("images", help="the packages with an image of their own")
    sub.add_parser("install-args", parents=[common], help="-e PATH[dev extras] for each package")
    sub.add_parser("closure", help="PACKAGE and what it needs").add_argument("package")
    sub.add_parser("requirement", parents=[common],
                   help="PATH[image extras] of PACKAGE").add_argument("package")
    sub.add_parser("dockerfile", help="the Dockerfile of PACKAGE's image").add_argument("package")
    args = parser.parse_args(argv)
    root = getattr(args, "root", "./packages")
    try:
        packages = load()
        if args.command == "names":
            print(" ".join(p.folder for p in packages))
        elif args.command == "images":
            print(" ".join(p.folder for p in packages if p.has_image))
        elif args.command == "install-args":
            print(" ".join(install_args(packages, root)))
        elif args.command == "closure":
            print(" ".join(p.folder for p in closure(packages, args.package)))
        else:
            package = closure(packages, args.package)[-1]
            if not package.has_image:
                raise PackagesError(f"package {args.package!r} has no image "
                                    f"([tool.trainyard] image = false in {package.path})")
            if args.command == "requirement":
                print(package.spec(package.image_extras or (), root))
            else:
                print(package.dockerfile)
    except PackagesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
