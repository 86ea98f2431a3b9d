"""Dataclass configs, loadable from YAML, overridable from the command line.

Every trainyard tool describes its settings as a (possibly nested) dataclass. A config is
resolved in layers, lowest first: the dataclass defaults, YAML files in the order given, then
overrides as dotted ``key=value`` strings. OmegaConf does the merging and type conversion; this
module adds error messages that name the key, where it came from and what was expected, and
keeps string fields from YAML's guessing (``name=yes`` stays the string ``"yes"``).

Validation beyond types belongs in each dataclass's ``__post_init__``: it runs once on the
final, merged values.

A field renamed keeps its old names as aliases: ``dataclasses.field(...,
metadata={"aliases": ("clip_epsilon",)})``. An alias is accepted wherever the name is: in YAML
files (saved run configs included), ``key=value`` overrides, command-line flags and, with
``accepts_aliases`` on the class, as a constructor keyword; it is resolved to the field's name
on the way in, so nothing downstream sees it. Giving a name and its alias with different
values in one place (one YAML mapping, one command line) is an error naming both.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import hashlib
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trainyard_core.io import atomic_write_text

T = TypeVar("T")

__all__ = [
    "ConfigError", "FieldInfo", "accepts_aliases", "check_resumable", "config_changes",
    "file_digest", "flatten", "iter_fields", "load_config", "peek_value", "resolve_aliases",
    "resume_config", "save_config", "to_yaml"
]


class ConfigError(ValueError):
    """A config value, key or file that cannot be used, with where it came from."""


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    """One leaf setting of a config dataclass, addressed by its dotted key."""

    key: str
    type: Any
    default: Any
    help: str
    flags: tuple[str, ...]
    aliases: tuple[str, ...] = ()  # old dotted keys that mean this one

    @property
    def base_type(self) -> Any:
        """The type with ``Optional`` removed."""
        return _strip_optional(self.type)


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def iter_fields(cls: type, prefix: str = "") -> Iterator[FieldInfo]:
    """Yield every leaf field of a config dataclass, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        inner = _strip_optional(tp)
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            yield from iter_fields(inner, prefix=f"{key}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        aliases = _declared_aliases(f)
        text = str(f.metadata.get("help", ""))
        if aliases:
            text = f"{text} (old name: {', '.join(aliases)})".strip()
        yield FieldInfo(key=key,
                        type=tp,
                        default=default,
                        help=text,
                        flags=tuple(f.metadata.get("flags", ())),
                        aliases=tuple(f"{prefix}{a}" for a in aliases))


def _declared_aliases(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    aliases = f.metadata.get("aliases", ())
    if isinstance(aliases, str) or not all(isinstance(a, str) and a for a in aliases):
        raise TypeError(f"field {f.name!r}: metadata 'aliases' must be a tuple of names, got "
                        f"{aliases!r}")
    return tuple(aliases)


def _alias_map(cls: type) -> dict[str, str]:
    """``{alias: field name}`` of one dataclass level."""
    return {a: f.name for f in dataclasses.fields(cls) for a in _declared_aliases(f)}


def accepts_aliases(cls: type[T]) -> type[T]:
    """Class decorator (after ``@dataclass``): ``cls(...)`` also takes the fields' aliases as
    keywords, so code written against the old names (``PPOConfig(clip_epsilon=0.2)``) and
    saved configs holding them keep working. Both a name and its alias with different values
    is a ``ValueError`` naming both."""
    aliases = _alias_map(cls)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for alias, name in aliases.items():
            if alias in kwargs:
                value = kwargs.pop(alias)
                if name in kwargs and kwargs[name] != value:
                    raise ValueError(f"{cls.__name__}: {alias}={value!r} and {name}="
                                     f"{kwargs[name]!r} both given; {alias} is the old name of "
                                     f"{name}, give one")
                kwargs[name] = value
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


def resolve_aliases(cls: type,
                    data: dict[str, Any],
                    where: str,
                    prefix: str = "") -> dict[str, Any]:
    """A copy of the mapping ``data`` (settings for ``cls``, e.g. a YAML file's) with every
    alias renamed to its field, in nested sections too; ``where`` names the source in the
    error raised when a name and its alias are both given with different values."""
    aliases = _alias_map(cls)
    out = dict(data)
    for alias, name in aliases.items():
        if alias not in out:
            continue
        value = out.pop(alias)
        if name in out and out[name] != value:
            raise ConfigError(f"{where}: {prefix}{alias} is the old name of {prefix}{name}; both "
                              f"given, with {value!r} and {out[name]!r}: give one")
        out[name] = value
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _strip_optional(hints[f.name])
        if (isinstance(inner, type) and dataclasses.is_dataclass(inner) and
                isinstance(out.get(f.name), dict)):
            out[f.name] = resolve_aliases(inner, out[f.name], where, f"{prefix}{f.name}.")
    return out


def _field_index(cls: type) -> dict[str, FieldInfo]:
    return {info.key: info for info in iter_fields(cls)}


def _section_keys(cls: type, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = _strip_optional(hints[f.name])
        if isinstance(inner, type) and dataclasses.is_dataclass(inner):
            keys.add(f"{prefix}{f.name}")
            keys |= _section_keys(inner, prefix=f"{prefix}{f.name}.")
    return keys


def _describe(exc: OmegaConfBaseException) -> str:
    # OmegaConf appends "full_key: …/object_type=…" lines; the first line is the message.
    return str(exc).splitlines()[0].strip()


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist (expected a YAML file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings, "
                          f"got {type(data).__name__}")
    return data


def _canonical_keys(index: dict[str, FieldInfo]) -> dict[str, str]:
    """``{dotted alias: dotted key}`` of every field."""
    return {alias: info.key for info in index.values() for alias in info.aliases}


def _parse_override(item: str, index: dict[str, FieldInfo], sections: set[str]) -> tuple[str, Any]:
    """``(dotted key, value)`` of a ``key=value`` override; an alias gives its field's key."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    key = _canonical_keys(index).get(key, key)
    if key not in index:
        if key in sections:
            raise ConfigError(f"override {item!r} sets the section {key!r}; "
                              f"set one of its keys instead ({key}.<name>=value)")
        close = difflib.get_close_matches(key, list(index), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"override {item!r}: unknown key {key!r}{hint}")
    info = index[key]
    if info.base_type in (str, Path):
        if info.base_type is not info.type and raw in ("null", "~", ""):
            return key, None
        # Strings stay verbatim: YAML would turn "yes" into True and "1e3" into 1000.0.
        return key, raw
    try:
        return key, yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value {raw!r} cannot be parsed: {exc}") from exc


def load_config(cls: type[T], files: Iterable[str | Path] = (), overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` from its defaults, then YAML ``files``, then ``key=value`` ``overrides``."""
    index = _field_index(cls)
    sections = _section_keys(cls)
    try:
        merged: DictConfig = OmegaConf.structured(cls)
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"{cls.__name__} is not a usable config dataclass: {_describe(exc)}") from exc
    for file in files:
        path = Path(file)
        try:
            merged = typing.cast(DictConfig, OmegaConf.merge(merged, _load_settings(cls, path)))
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None)
            where = f" at key {key!r}" if key else ""
            raise ConfigError(f"config file {str(path)!r}{where}: {_describe(exc)}") from exc
    overrides = list(overrides)
    _check_alias_conflicts(overrides, index, sections)
    for item in overrides:
        key, value = _parse_override(item, index, sections)
        try:
            OmegaConf.update(merged, key, value, merge=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"override {item!r}: {_describe(exc)} "
                              f"(expected {_type_name(index[key].type)})") from exc
    try:
        return typing.cast(T, OmegaConf.to_object(merged))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        raise ConfigError(f"{cls.__name__}: {_describe(exc)}" +
                          (f" (key {key!r})" if key else "")) from exc
    except (ValueError, TypeError) as exc:
        # Raised by a dataclass's __post_init__ on merged values.
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def _load_settings(cls: type, path: Path) -> dict[str, Any]:
    """A YAML file's settings for ``cls``, aliases resolved."""
    return resolve_aliases(cls, _load_yaml(path), f"config file {str(path)!r}")


def _check_alias_conflicts(overrides: list[str], index: dict[str, FieldInfo],
                           sections: set[str]) -> None:
    """Refuse one command line giving a key under its name and its alias, differently."""
    aliases = _canonical_keys(index)
    given: dict[str, dict[str, tuple[Any, str]]] = {}
    for item in overrides:
        spelled = item.split("=", 1)[0].strip()
        key, value = _parse_override(item, index, sections)
        given.setdefault(key, {})[spelled] = (value, item)
    for key, spellings in given.items():
        if key not in spellings or len(spellings) < 2:
            continue
        value, item = spellings[key]
        for spelled, (other, other_item) in spellings.items():
            if spelled != key and aliases.get(spelled) == key and other != value:
                raise ConfigError(f"overrides {other_item!r} and {item!r}: {spelled} is the old "
                                  f"name of {key}; both given, differently: give one")


def _type_name(tp: Any) -> str:
    base = _strip_optional(tp)
    name = getattr(base, "__name__", str(base))
    return f"{name} or null" if base is not tp else name


def to_yaml(cfg: Any) -> str:
    """The YAML text of a config dataclass instance; ``load_config`` reads it back."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write ``cfg`` as YAML, atomically (a reader never sees half a file)."""
    return atomic_write_text(Path(path), to_yaml(cfg))


def flatten(cfg: Any) -> dict[str, Any]:
    """Every leaf value of a config dataclass instance, by dotted key."""
    out: dict[str, Any] = {}

    def walk(value: Any, prefix: str) -> None:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if f.init and not f.name.startswith("_"):
                    walk(getattr(value, f.name), f"{prefix}{f.name}.")
        else:
            out[prefix[:-1]] = value

    walk(cfg, "")
    return out


def config_changes(old: Any, new: Any) -> dict[str, tuple[Any, Any]]:
    """``{key: (old value, new value)}`` for every leaf where two configs differ."""
    before, after = flatten(old), flatten(new)
    return {
        key: (before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: tells whether a config file is the one a run started from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _lookup(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def peek_value(cls: type, key: str, files: Iterable[str | Path] = (),
               overrides: Iterable[str] = ()) -> Any:
    """The value ``key`` would take from these layers, without building the whole config.

    A command needs one setting (``resume``) to know which base to resolve the rest on; the
    full config may only be valid on that base.
    """
    index = _field_index(cls)
    sections = _section_keys(cls)
    value = index[key].default
    for file in files:
        found, file_value = _lookup(_load_settings(cls, Path(file)), key)
        if found:
            value = file_value
    for item in overrides:
        if "=" in item and _canonical_keys(index).get(
                item.split("=", 1)[0].strip(),
                item.split("=", 1)[0].strip()) == key:
            value = _parse_override(item, index, sections)[1]
    return value


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def resume_config(
    cls: type[T],
    saved: str | Path,
    files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    free: Iterable[str] = (),
    grow: Iterable[str] = (),
    same_as_saved: Iterable[str] = ()
) -> T:
    """The config of a run being continued: ``saved`` (its config.yaml) is the base.

    ``files`` and ``overrides`` are layered on it as usual, but may change only keys matching
    a ``free`` pattern (fnmatch: settings that cannot change the run's results) and raise
    keys matching a ``grow`` pattern (a larger budget continues the run). Any other difference
    is refused with one line per key. A file whose sha256 is in ``same_as_saved`` is one the
    run started from: its values are already in ``saved``, under the run's own overrides, so
    it is not layered again.
    """
    saved = Path(saved)
    run = load_config(cls, files=[saved])
    skip = set(same_as_saved)
    paths = [Path(f) for f in files]
    layered = [f for f in paths if not (f.is_file() and file_digest(f) in skip)]
    overrides = list(overrides)
    new = load_config(cls, files=[saved, *layered], overrides=overrides)
    sources: dict[str, str] = {}
    index = _field_index(cls)
    for file in layered:
        data = _load_settings(cls, file)
        for key in flatten(run):
            if _lookup(data, key)[0]:
                sources[key] = f"file {str(file)!r}"
    for item in overrides:
        spelled = item.split("=", 1)[0].strip()
        sources[_canonical_keys(index).get(spelled, spelled)] = f"override {item!r}"
    check_resumable(run, new, saved, free, grow, sources)
    return new


def check_resumable(run: Any,
                    new: Any,
                    saved: str | Path,
                    free: Iterable[str] = (),
                    grow: Iterable[str] = (),
                    sources: dict[str, str] | None = None) -> None:
    """Refuse ``new`` as the continuation of the run whose config is ``run`` (see
    ``resume_config``), naming each key, the run's value and the new one."""
    free, grow = tuple(free), tuple(grow)
    sources = sources or {}
    lines = []
    from_file = False
    for key, (old, value) in config_changes(run, new).items():
        if _matches(key, free):
            continue
        grows = isinstance(old, int | float) and isinstance(value, int | float) and value > old
        if grows and _matches(key, grow):
            continue
        where = f" (from {sources[key]})" if key in sources else ""
        from_file = from_file or sources.get(key, "").startswith("file ")
        rule = " (may only grow)" if _matches(key, grow) else ""
        lines.append(f"  {key}: the run has {old!r}, given {value!r}{where}{rule}")
    if lines:
        hint = (" (a config file the run did not start from counts as given settings; that "
                "config.yaml itself may be given)" if from_file else "")
        raise ConfigError(
            f"resume: {len(lines)} setting(s) would change the run whose config is "
            f"{str(saved)!r}; that file is the base of a resumed run, so give resume alone "
            f"(or start a new run){hint}:\n" + "\n".join(lines))
