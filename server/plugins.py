"""Plug-in loading: policy and exit modules from entry points, once, at start.

This is certbot's ``disco`` pattern. Modules are found by name in two entry-point groups,
``certforge.policies`` and ``certforge.exits``; certforge's own modules register there exactly
like third-party ones (see ``pyproject.toml``). That is also how the ``policies`` package joins
the engine without ``server`` importing it (import-linter forbids that import).

Each entry point is a factory ``create(config, options)``: the whole ``Config`` (a policy may
need the profiles, an exit the data directory) and the module's own options. Anything wrong is
found here, before the server listens: an unknown name, an entry point that fails to import, a
factory that raises or returns something that is not a module. Each becomes a ``ConfigError``
naming the plug-in (``exit module 'hooks' (webhook): ...``), and ``certforge serve`` stops
with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from server.config import Config
from server.errors import ConfigError
from server.exits.base import ExitModule, check_closable
from server.model import PolicyModule

POLICY_GROUP = "certforge.policies"
EXIT_GROUP = "certforge.exits"

PolicyFactory = Callable[[Config, Mapping[str, Any]], PolicyModule]


def load_policy_modules(config: Config) -> list[PolicyModule]:
    """The policy chain, in ``[policy] modules`` order (the order they decide in)."""
    unused = sorted(set(config.policy.options) - set(config.policy.modules))
    if unused:
        raise ConfigError(
            f"[policy] options: {unused[0]!r} is not one of the modules "
            f"({', '.join(config.policy.modules)})"
        )
    modules: list[PolicyModule] = []
    for name in config.policy.modules:
        label = f"policy module {name!r}"
        factory = _load_factory(POLICY_GROUP, name, label)
        module = _create(factory, label, config, config.policy.options.get(name, {}))
        _require_method(module, "decide", label)
        modules.append(module)
    return modules


def load_exit_modules(config: Config) -> dict[str, ExitModule]:
    """The exit modules by consumer name (``[[exits]] name``, which defaults to the type).

    The consumer name is the store's cursor for the module, so it is passed to the factory
    as the option ``name``: the module names itself, and its errors, after it.
    """
    modules: dict[str, ExitModule] = {}
    for exit_config in config.exits:
        label = f"exit module {exit_config.name!r} ({exit_config.type})"
        factory = _load_factory(EXIT_GROUP, exit_config.type, label)
        options = {**exit_config.options, "name": exit_config.name}
        module = _create(factory, label, config, options)
        _require_method(module, "deliver", label)
        try:
            check_closable(module)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        modules[exit_config.name] = module
    return modules


def _load_factory(group: str, name: str, label: str) -> Callable[..., Any]:
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        raise ConfigError(f"{label}: no entry point in {group}")
    if len({ep.value for ep in found}) > 1:
        # Two distributions claim the name: picking one would depend on sys.path order.
        raise ConfigError(
            f"{label}: several entry points in {group}: "
            f"{', '.join(sorted({ep.value for ep in found}))}"
        )
    try:
        factory = found[0].load()
    except Exception as exc:
        raise ConfigError(
            f"{label}: cannot load {found[0].value}: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(factory):
        raise ConfigError(f"{label}: {found[0].value} is not callable")
    return factory  # type: ignore[no-any-return]  # entry points are untyped by nature


def _create(
    factory: Callable[..., Any], label: str, config: Config, options: Mapping[str, Any]
) -> Any:
    try:
        return factory(config, options)
    except ConfigError as exc:
        raise ConfigError(f"{label}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(f"{label}: {type(exc).__name__}: {exc}") from exc


def _require_method(module: object, method: str, label: str) -> None:
    if not callable(getattr(module, method, None)) or not isinstance(
        getattr(module, "name", None), str
    ):
        raise ConfigError(
            f"{label}: the factory returned {type(module).__name__}, "
            f"which has no name and {method}()"
        )
