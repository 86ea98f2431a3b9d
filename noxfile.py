"""Sessions for testing, linting and benchmarking trainyard. `nox -l` lists them.

Every install goes through ci/install.sh (uv, pinned by constraints.txt), the same command
the Dockerfiles run. Arguments after `--` reach pytest (or the tool a session runs).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import types
from pathlib import Path

import nox

ROOT = Path(__file__).parent


def _load_packages() -> types.ModuleType:
    """ci/packages.py, the one package list: a script, so loaded by path (ci/images.py and the
    tests load it under the same module name)."""
    name = "trainyard_ci_packages"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "ci" / "packages.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


ci_packages = _load_packages()
# Every package, dependencies first, each with the extras the tests exercise (its pyproject's
# [tool.trainyard] dev-extras).
PACKAGE_INFO = {p.folder: p for p in ci_packages.load(ROOT)}
PACKAGES = list(PACKAGE_INFO)
DEV_REQUIREMENTS = "ci/dev-requirements.txt"
SOURCES = ["noxfile.py", "ci", "packages", "tests", "benchmarks"]

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True
nox.options.sessions = ["lint", "tests", "docker_lint"]


def _uv() -> str:
    """The uv that runs nox (installed beside it by `make setup`), else the one on PATH."""
    local = Path(sys.executable).parent / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv not found: run `make setup` (it installs uv beside nox)")
    return found


def install(session: nox.Session, *args: str) -> None:
    """Install into the session's venv with ci/install.sh."""
    session.run("bash", str(ROOT / "ci/install.sh"), *args, external=True, env={"UV": _uv()})


def install_packages(session: nox.Session, packages: list[str], *extra: str) -> None:
    """Install ``packages`` editable from their paths, with their dev extras."""
    editable = ci_packages.install_args([PACKAGE_INFO[name] for name in packages])
    install(session, *extra, *editable, "-r", DEV_REQUIREMENTS)


def _pytest(session: nox.Session, *paths: str) -> None:
    session.env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    session.run("pytest", *(session.posargs or paths))


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Every package's tests and the cross-package tests in tests/."""
    # As make setup installs: the shipped model weights (SmolLM2 tests), and bytecode compiled
    # once rather than in every subprocess the tests start.
    install_packages(session, PACKAGES, "--with-models", "--compile-bytecode")
    _pytest(session, *[f"packages/{name}/tests" for name in PACKAGES], "tests")


@nox.session(python="3.11")
@nox.parametrize("package", PACKAGES)
def package_tests(session: nox.Session, package: str) -> None:
    """One package's tests, in a venv holding only that package and what it depends on."""
    install_packages(session, [package])
    _pytest(session, f"packages/{package}/tests")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff, and yapf in diff mode (fails on any formatting change)."""
    install(session, "ruff", "yapf")
    session.run("ruff", "check", *SOURCES, *session.posargs)
    session.run("yapf", "--diff", "--recursive", "--parallel", *SOURCES)


@nox.session(name="format", python="3.11")
def format_(session: nox.Session) -> None:
    """Format every Python file in place with yapf, and apply ruff's safe fixes."""
    install(session, "ruff", "yapf")
    session.run("ruff", "check", "--fix-only", "--quiet", *SOURCES)
    session.run("yapf", "--in-place", "--recursive", "--parallel", *SOURCES)


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy over every package's sources."""
    install_packages(session, PACKAGES)
    sources = [f"packages/{name}/src" for name in PACKAGES]
    session.run("mypy", *(session.posargs or sources))


@nox.session(python="3.11")
def docker_lint(session: nox.Session) -> None:
    """hadolint, Compose v2 config, actionlint, check-jsonschema and shellcheck."""
    install(session, "-r", DEV_REQUIREMENTS)
    session.run("python", "ci/docker_lint.py", *session.posargs)


@nox.session(python="3.11", default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks: each prints its figure beside an anchor measured in the same run."""
    install_packages(session, PACKAGES)
    install(session, "-r", "ci/bench-requirements.txt")
    scripts = session.posargs or sorted(str(p) for p in (ROOT / "benchmarks").glob("*.py"))
    for script in scripts:
        session.run("python", script)


@nox.session(python="3.11", default=False)
def images(session: nox.Session) -> None:
    """Build the base and every image, then check each runs its compose services' commands.

    docker where `docker info` answers, else buildah on a stand-in CUDA base (ci/images.py).
    Arguments after `--` go to ci/images.py (--only, --dockerfile IMAGE=PATH, --skip-build).
    """
    install(session, "-r", DEV_REQUIREMENTS)  # docker-compose reads the services
    session.run("python", "ci/images.py", *session.posargs)
