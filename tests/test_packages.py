"""ci/packages.py, the one package list: it matches the packages on disk, refuses a pyproject
that does not say what it needs (naming the file), and the Makefile, the noxfile and the image
builds take their lists from it (shown by adding a package to a copy of the repository's
build files and watching `make -n` and `nox --list` pick it up).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import trainyard_ci_packages as ci_packages

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ci_packages.load(ROOT)
BY_FOLDER = ci_packages.by_folder(PACKAGES)


def _trainyard_requirements(pyproject: Path) -> set[str]:
    """Folders of the trainyard packages a pyproject requires (extras included), read here
    independently of ci/packages.py."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        reqs += group
    names = {re.match(r"[A-Za-z0-9._-]+", r)[0] for r in reqs}  # type: ignore[index]
    return {n.removeprefix("trainyard-") for n in names if n.startswith("trainyard-")}


def test_the_list_is_the_packages_on_disk() -> None:
    on_disk = {p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml")}
    assert set(BY_FOLDER) == on_disk
    assert len(PACKAGES) >= 7
    for package in PACKAGES:
        assert package.name == f"trainyard-{package.folder}"
        assert (package.path / "src" / package.import_name / "__init__.py").is_file()
        requires = _trainyard_requirements(package.path / "pyproject.toml") - {package.folder}
        assert set(package.depends) == requires, package.folder


def test_install_order_puts_dependencies_first() -> None:
    seen: set[str] = set()
    for package in PACKAGES:
        assert set(package.depends) <= seen, f"{package.folder} before {package.depends}"
        seen.add(package.folder)
    assert PACKAGES[0].folder == "core"
    assert [p.folder for p in ci_packages.closure(PACKAGES, "trainers-rl")
           ] == ["core", "carla-env", "driving-vla", "trainers-rl"]


def test_every_image_dockerfile_exists_and_core_has_no_image() -> None:
    assert not BY_FOLDER["core"].has_image
    for package in PACKAGES:
        if package.has_image:
            assert (ROOT / str(package.dockerfile)).is_file(), package.dockerfile
    assert BY_FOLDER["trainers-rl"].image_extras == ("export", "carla", "wandb")
    assert BY_FOLDER["env-servers"].dockerfile == "docker/env-servers.Dockerfile"


def test_every_printed_install_argument_is_a_local_path() -> None:
    """`carla-env` and `trainyard` on PyPI are strangers': never hand an installer a bare name."""
    args = ci_packages.install_args(PACKAGES)
    assert args[::2] == ["-e"] * len(PACKAGES)
    assert all(spec.startswith("./packages/") for spec in args[1::2])
    assert "./packages/core[tensorboard,wandb]" in args


# ---- bad pyprojects -------------------------------------------------------------------------

GOOD = """\
[project]
name = "trainyard-{name}"
dependencies = []
[project.optional-dependencies]
fast = ["numpy"]
[tool.hatch.build.targets.wheel]
packages = ["src/{import_name}"]
"""


def _tree(tmp_path: Path, table: str, name: str = "widget") -> Path:
    """A repository copy with one package whose pyproject ends with ``table``."""
    folder = tmp_path / "packages" / name
    folder.mkdir(parents=True)
    (folder / "pyproject.toml"
    ).write_text(GOOD.format(name=name, import_name=name.replace("-", "_")) + table)
    return folder / "pyproject.toml"


@pytest.mark.parametrize("table, expected", [
    ("", r"no \[tool.trainyard\] table"),
    ("[tool.trainyard]\nimage = false\n", "has no dev-extras"),
    ("[tool.trainyard]\ndev-extras = \"fast\"\nimage = false\n", "dev-extras must be a list"),
    ("[tool.trainyard]\ndev-extras = [\"slow\"]\nimage = false\n", "names extra 'slow'"),
    ("[tool.trainyard]\ndev-extras = []\n", "image must be a table with `extras` or `false`"),
    ("[tool.trainyard]\ndev-extras = []\nimage = {}\n", "image must have `extras`"),
    ("[tool.trainyard]\ndev-extras = []\nimages = false\n", "unknown keys \\['images'\\]"),
    ("[tool.trainyard\n", "not valid TOML"),
])
def test_a_missing_or_malformed_table_is_an_error_naming_the_file(tmp_path: Path, table: str,
                                                                  expected: str) -> None:
    pyproject = _tree(tmp_path, table)
    with pytest.raises(ci_packages.PackagesError, match=expected) as caught:
        ci_packages.load(tmp_path)
    assert str(caught.value).startswith(f"{pyproject}: ")


def test_a_good_table_loads(tmp_path: Path) -> None:
    _tree(tmp_path, '[tool.trainyard]\ndev-extras = ["fast"]\nimage.extras = []\n')
    (package,) = ci_packages.load(tmp_path)
    assert (package.folder, package.import_name, package.dev_extras) == ("widget", "widget",
                                                                         ("fast",))
    assert package.dockerfile == ci_packages.PACKAGE_DOCKERFILE


def test_a_dependency_cycle_is_an_error(tmp_path: Path) -> None:
    for name, dep in (("a-pkg", "b-pkg"), ("b-pkg", "a-pkg")):
        pyproject = _tree(tmp_path, "[tool.trainyard]\ndev-extras = []\nimage = false\n", name)
        pyproject.write_text(pyproject.read_text().replace(
            "dependencies = []", f'dependencies = ["trainyard-{dep} @ {{root:parent:uri}}/{dep}"]'))
    with pytest.raises(ci_packages.PackagesError, match="form a cycle"):
        ci_packages.load(tmp_path)


# ---- the consumers read it ------------------------------------------------------------------

NEW = "zz-gadget"  # a package that exists only in the copy


@pytest.fixture()
def copy_with_new_package(tmp_path: Path) -> Path:
    """The repository's build files (Makefile, noxfile, ci/, every pyproject) in ``tmp_path``,
    plus a package ``NEW`` with an image that depends on core."""
    for name in ("Makefile", "noxfile.py", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "ci", tmp_path / "ci", ignore=shutil.ignore_patterns("__pycache__"))
    for package in PACKAGES:
        (tmp_path / "packages" / package.folder).mkdir(parents=True)
        shutil.copy(package.path / "pyproject.toml", tmp_path / "packages" / package.folder)
    pyproject = _tree(tmp_path, '[tool.trainyard]\ndev-extras = ["fast"]\nimage.extras = []\n', NEW)
    pyproject.write_text(pyproject.read_text().replace(
        "dependencies = []", 'dependencies = ["trainyard-core @ {root:parent:uri}/core"]'))
    return tmp_path


def _make(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "PYTHON=python3", *args],
                          cwd=root,
                          capture_output=True,
                          text=True,
                          timeout=60,
                          check=False)


def test_make_setup_installs_what_the_list_says(copy_with_new_package: Path) -> None:
    result = _make(copy_with_new_package, "-n", "-B", "setup")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.replace("\\\n", " ").splitlines()  # join continued lines
    (install,) = [line for line in commands if "ci/install.sh" in line]
    specs = re.findall(r"'-e' '([^']+)'", install)
    expected = ci_packages.install_args(ci_packages.load(copy_with_new_package))[1::2]
    assert specs == expected
    assert f"./packages/{NEW}[fast]" in specs
    assert specs.index("./packages/core[tensorboard,wandb]") < specs.index(
        f"./packages/{NEW}[fast]")


def test_make_help_lists_each_package_image(copy_with_new_package: Path) -> None:
    result = _make(copy_with_new_package, "help")
    assert result.returncode == 0, result.stderr
    assert f"docker-build-{NEW}" in result.stdout
    assert "docker-build-core" not in result.stdout


def test_make_stops_on_a_bad_pyproject_naming_it(copy_with_new_package: Path) -> None:
    pyproject = copy_with_new_package / "packages" / NEW / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.trainyard]", "[tool.other]"))
    result = _make(copy_with_new_package, "help")
    assert result.returncode == 2
    assert f"{pyproject}: no [tool.trainyard] table" in result.stderr
    assert "ci/packages.py could not read the package list" in result.stderr


def test_nox_sessions_follow_the_list(copy_with_new_package: Path) -> None:
    nox = Path(sys.executable).parent / "nox"
    result = subprocess.run([str(nox), "--list", "-f",
                             str(copy_with_new_package / "noxfile.py")],
                            capture_output=True,
                            text=True,
                            timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    listed = re.findall(r"package_tests\(package='([^']+)'\)", result.stdout)
    assert listed == [p.folder for p in ci_packages.load(copy_with_new_package)]
    assert NEW in listed


def test_images_builds_each_package_image_from_its_dockerfile() -> None:
    images = sys.modules.get("ci_images")
    if images is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("ci_images_for_packages",
                                                      ROOT / "ci" / "images.py")
        assert spec is not None and spec.loader is not None
        images = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = images
        spec.loader.exec_module(images)
    order = ["base", *(p.folder for p in PACKAGES if p.has_image), "tools"]
    assert order == images.IMAGES
    assert images.default_dockerfile("trainers-rl") == ROOT / "docker" / "package.Dockerfile"
    assert images.build_args("trainers-rl", "p", "t") == {
        "BASE_IMAGE": "p/base:t",
        "PACKAGE": "trainers-rl"
    }
    assert images.build_args("tools", "p", "t") == {"BASE_IMAGE": "p/trainers-rl:t"}


def test_the_cli_prints_the_image_requirement_as_a_path() -> None:
    result = subprocess.run([
        sys.executable,
        str(ROOT / "ci" / "packages.py"), "requirement", "trainers-rl", "--root", "/opt/x/packages"
    ],
                            capture_output=True,
                            text=True,
                            timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/opt/x/packages/trainers-rl[export,carla,wandb]"
    core = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "packages.py"), "dockerfile", "core"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False)
    assert core.returncode == 2
    assert core.stderr.startswith("error: package 'core' has no image")
