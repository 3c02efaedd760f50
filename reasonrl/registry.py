"""Name → object registries: one small class serves every kind of registered thing.

Advantage estimators, policy losses, KL estimators, loss-aggregation modes, learning-rate
schedules, KL controllers and rewarders each keep a :class:`Registry`. A registry

* registers with a decorator, ``@REGISTRY.register("name", **metadata)`` (a name taken twice is
  an error, so a user's file cannot silently replace a built-in);
* answers ``get(name)``, ``metadata(name)``, ``names()`` and ``resolve(name)`` (the canonical
  registered name), accepting its aliases;
* loads **file specs**: ``get("path/to/file.py:my_est")`` imports that file (once per resolved
  path, the same loader as ``--task examples/my_task.py:task``) and returns what the file
  registered as ``my_est``, or the object it defines under that attribute name. A dotted module
  (``mypkg.losses:my_loss``) works the same way. So YAML can name a user's function::

      algorithm:
        estimator: path/to/my_est.py:my_est     # my_est.py: @register_advantage_estimator("my_est")

An unknown name raises :class:`reasonrl.config.ConfigError` (a ``ValueError``) naming the kind,
the close matches and every valid choice.

Importing this module stays cheap (no torch, no reasonrl.config): ``import reasonrl`` imports it
for the file loader, which every process must have before it unpickles an object defined in a
user's file.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")

FILE_SPEC_HINT = "path/to/file.py:name"


def is_file_spec(name: str) -> bool:
    """Whether ``name`` is a ``module_or_file:attribute`` spec rather than a registered name."""
    return isinstance(name, str) and ":" in name


class Registry(Generic[T]):
    """Registered objects of one kind, selected by name.

    Args:
        kind: what is registered, for messages ("advantage estimator").
        aliases: other spellings, ``{"ppo": "gae"}``; ``resolve`` maps them to the registered name.
        defaults: metadata every entry has unless its registration says otherwise.
        from_attribute: turns an object a user's file *defines* (without registering it) into an
            entry; default: the object itself. Rewarders use it to wrap a plain reward function.
    """

    def __init__(
        self,
        kind: str,
        *,
        aliases: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        from_attribute: Callable[[Any], T] | None = None,
    ) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._metadata: dict[str, Mapping[str, Any]] = {}
        self._aliases = dict(aliases or {})
        self._defaults = dict(defaults or {})
        self._from_attribute = from_attribute
        self._specs: dict[str, str] = {}  # file spec -> the name it resolved to

    def register(self, name: str, **metadata: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name`` with ``metadata``; returns it unchanged."""

        def decorator(obj: T) -> T:
            self.add(name, obj, **metadata)
            return obj

        return decorator

    def add(self, name: str, obj: T, **metadata: Any) -> None:
        """Register ``obj`` as ``name``. Raises ValueError when the name (or an alias) is taken."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries or name in self._aliases:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        self._metadata[name] = MappingProxyType({**self._defaults, **metadata})

    def unregister(self, name: str) -> T:
        """Remove ``name`` (and the file specs that resolved to it); for tests and notebooks."""
        obj = self._entries.pop(name)
        del self._metadata[name]
        self._specs = {spec: target for spec, target in self._specs.items() if target != name}
        return obj

    def resolve(self, name: str) -> str:
        """The registered name ``name`` stands for: itself, an alias's target, or what a file spec
        registered (importing the file). Raises ConfigError listing the choices when unknown."""
        if not isinstance(name, str):
            raise self._unknown(name)
        if name in self._entries:
            return name
        if name in self._aliases and self._aliases[name] in self._entries:
            return self._aliases[name]
        if is_file_spec(name):
            return self._resolve_spec(name)
        raise self._unknown(name)

    def get(self, name: str) -> T:
        """The object registered as ``name`` (aliases and file specs resolved)."""
        return self._entries[self.resolve(name)]

    def metadata(self, name: str) -> Mapping[str, Any]:
        """The read-only metadata of ``name``: the registry's defaults updated by its registration."""
        return self._metadata[self.resolve(name)]

    def names(self) -> list[str]:
        """Registered names in registration order (aliases not included)."""
        return list(self._entries)

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def live_names(self) -> Sequence[str]:
        """A read-only sequence of the registered names that follows later registrations."""
        return _LiveNames(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or (name in self._aliases and self._aliases[name] in self._entries)

    def choices(self) -> str:
        """The valid spellings for messages: names, aliases, and the file-spec form."""
        text = ", ".join(self._entries)
        aliases = [alias for alias, target in self._aliases.items() if target in self._entries]
        if aliases:
            text += f" (aliases: {', '.join(aliases)})"
        return f"{text} or {FILE_SPEC_HINT}"

    def _unknown(self, name: Any, detail: str = "") -> Exception:
        from reasonrl.config import ConfigError  # here, not at the top: keeps `import reasonrl` light

        close = difflib.get_close_matches(str(name), [*self._entries, *self._aliases], n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        detail = f": {detail}" if detail else ""
        return ConfigError(f"unknown {self.kind} {name!r}{hint}{detail}; valid choices: {self.choices()}")

    def _resolve_spec(self, spec: str) -> str:
        if spec in self._specs and self._specs[spec] in self._entries:
            return self._specs[spec]
        module_ref, _, attr = spec.rpartition(":")
        if not module_ref or not attr:
            raise self._unknown(spec, f"a file spec looks like {FILE_SPEC_HINT}")
        try:
            module = import_module_or_file(module_ref)
        except (MissingModuleFile, ModuleNotFoundError) as exc:
            if isinstance(exc, ModuleNotFoundError) and exc.name != module_ref:
                raise  # the user's module itself failed to import something: show that error
            raise self._unknown(spec, str(exc)) from None
        name = self._name_in_module(module, attr)
        if name is None:
            obj = getattr(module, attr, None)
            if obj is None:
                raise self._unknown(spec, f"{module_ref} has no {attr!r}, neither an attribute nor a registered {self.kind}")
            # Defined but not registered: registered under the spec itself, with the default metadata.
            self.add(spec, self._from_attribute(obj) if self._from_attribute else obj)
            name = spec
        self._specs[spec] = name
        return name

    def _name_in_module(self, module: ModuleType, attr: str) -> str | None:
        """The registered name of ``module.attr`` (whatever name it was registered under), or of
        an entry the module registered as ``attr``; None when neither exists."""
        obj = getattr(module, attr, None)
        if obj is not None:
            for name, entry in self._entries.items():
                if entry is obj:
                    return name
        entry = self._entries.get(attr)
        if entry is not None and getattr(entry, "__module__", None) == module.__name__:
            return attr
        return None


class _LiveNames(Sequence):
    """The keys of a registry's entries as a read-only sequence (the old module-level name lists)."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = entries

    def __getitem__(self, index):  # type: ignore[override]
        return list(self._entries)[index]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return repr(tuple(self._entries))


# ----------------------------------------------------------------------------------------------
# Loading a user's module or file
# ----------------------------------------------------------------------------------------------


def import_module_or_file(module: str) -> ModuleType:
    """Import ``module``: a dotted module path, or a ``.py`` file path (``examples/my_task.py``).

    A file is imported under a name that encodes its absolute path (see :class:`_UserFileFinder`),
    so it runs once whatever spelling of the path is used, and a worker process started fresh
    (forkserver/spawn, as the batch verifier uses) can import it again when it unpickles an
    object defined there.

    Raises:
        MissingModuleFile: (a ValueError) the file does not exist.
        ModuleNotFoundError: the dotted module does not exist.
    """
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = Path(module).resolve()
        if not path.is_file():
            raise MissingModuleFile(f"module file {module!r} does not exist")
        return importlib.import_module(USER_FILE_PREFIX + str(path).encode("utf-8").hex())
    return importlib.import_module(module)


class MissingModuleFile(ValueError):
    """A user's module file named by a spec does not exist."""


# Kept as it was when the loader lived in reasonrl.tasks: processes that unpickle objects from
# a user's file look the module up under this name.
USER_FILE_PREFIX = "reasonrl_task_file_"


class _UserFileFinder(importlib.abc.MetaPathFinder):
    """Resolves ``reasonrl_task_file_<hex of an absolute path>`` to that ``.py`` file, in any
    process that has imported reasonrl (one import per file, whatever spelling of the path was used)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if not fullname.startswith(USER_FILE_PREFIX):
            return None
        try:
            file = bytes.fromhex(fullname[len(USER_FILE_PREFIX):]).decode("utf-8")
        except ValueError:
            return None
        return importlib.util.spec_from_file_location(fullname, file) if os.path.isfile(file) else None


if not any(isinstance(finder, _UserFileFinder) for finder in sys.meta_path):
    sys.meta_path.append(_UserFileFinder())
