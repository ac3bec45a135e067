"""Plug-in loading from entry points: the built-ins, order, options, and every way to fail.

Built-in exits load through the real entry points of the installed (editable) project. Cases
that need a plug-in nobody ships use ``FakeEntryPoint``s added to the real ones by replacing
``server.plugins.entry_points``, the one lookup the loader does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from server import plugins
from server.config import Config, ExitConfig, PolicyConfig, ServerConfig, parse_config
from server.errors import ConfigError
from server.exits.base import Closable, ExitModule
from server.exits.files import FilesExit
from server.exits.log import LogExit
from server.exits.webhook import WebhookExit
from server.model import (
    CertificateDraft,
    Decision,
    EnrollmentRequest,
    Event,
    Issue,
    PolicyModule,
)


@dataclass
class FakeEntryPoint:
    """Just what the loader uses of ``importlib.metadata.EntryPoint``."""

    name: str
    group: str
    target: object
    value: str = ""

    def __post_init__(self) -> None:
        self.value = self.value or f"fake.{self.group}:{self.name}"

    def load(self) -> object:
        return self.target


class PassPolicy:
    def __init__(self, name: str) -> None:
        self.name = name

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Decision:
        return Issue(draft)


class QuietExit:
    def __init__(self, name: str) -> None:
        self.name = name

    async def deliver(self, event: Event) -> None:
        return None


@dataclass
class RecordingFactory:
    """A plug-in factory that records the options it was given."""

    make: Callable[[str], object]
    calls: list[tuple[Config, dict[str, Any]]] = field(default_factory=list)
    made: list[object] = field(default_factory=list)

    def __call__(self, config: Config, options: Mapping[str, Any]) -> object:
        self.calls.append((config, dict(options)))
        self.made.append(self.make(str(options.get("name", "policy"))))
        return self.made[-1]


Register = Callable[..., None]


@pytest.fixture
def register(monkeypatch: pytest.MonkeyPatch) -> Register:
    """Add fake entry points to what is installed, as a third-party package would."""
    extra: list[FakeEntryPoint] = []

    def entry_points(*, group: str) -> list[Any]:
        return [*metadata.entry_points(group=group), *(e for e in extra if e.group == group)]

    def add(group: str, name: str, target: object, value: str = "") -> None:
        extra.append(FakeEntryPoint(name, group, target, value))

    monkeypatch.setattr(plugins, "entry_points", entry_points)
    return add


def policy_config(*modules: str, **options: Mapping[str, Any]) -> Config:
    return Config(policy=PolicyConfig(modules=modules, options=options))


def exits_config(*exits: ExitConfig, data_dir: Path = Path("data")) -> Config:
    return Config(server=ServerConfig(data_dir=data_dir), exits=exits)


def raising(exc: Exception) -> Callable[[Config, Mapping[str, Any]], object]:
    def factory(config: Config, options: Mapping[str, Any]) -> object:
        raise exc

    return factory


# Exit modules


def test_builtin_exits_load_from_the_toml_tables(tmp_path: Path) -> None:
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "exits": [
                {"type": "webhook", "name": "hooks", "url": "https://example.com/h", "secret": "s"},
                {"type": "files", "directory": "exports"},
                {"type": "log", "name": "audit", "events": ["issued", "revoked"]},
            ],
        }
    )
    modules = plugins.load_exit_modules(config)
    assert list(modules) == ["hooks", "files", "audit"]
    assert isinstance(modules["hooks"], WebhookExit)
    assert isinstance(modules["files"], FilesExit)
    assert isinstance(modules["audit"], LogExit)
    assert {name: m.name for name, m in modules.items()} == {n: n for n in modules}
    assert modules["files"].directory == tmp_path / "exports"
    assert [n for n, m in modules.items() if isinstance(m, Closable)] == ["hooks"]


def test_no_exits_configured_loads_nothing() -> None:
    assert plugins.load_exit_modules(Config()) == {}


def test_unknown_exit_type_is_named() -> None:
    config = exits_config(ExitConfig(name="pager", type="pagerduty"))
    with pytest.raises(ConfigError) as err:
        plugins.load_exit_modules(config)
    assert str(err.value) == "exit module 'pager' (pagerduty): no entry point in certforge.exits"


def test_exit_factory_config_error_names_the_module_and_the_key() -> None:
    config = exits_config(ExitConfig(name="hooks", type="webhook"))
    with pytest.raises(ConfigError) as err:
        plugins.load_exit_modules(config)
    assert str(err.value) == "exit module 'hooks' (webhook): [[exits]] hooks url: is required"


def test_third_party_exit_registers_in_the_same_group(register: Register) -> None:
    factory = RecordingFactory(QuietExit)
    register("certforge.exits", "quiet", factory)
    config = exits_config(ExitConfig(name="q1", type="quiet", options={"level": 3}))
    modules = plugins.load_exit_modules(config)
    assert isinstance(modules["q1"], QuietExit)
    assert isinstance(modules["q1"], ExitModule)
    assert factory.calls == [(config, {"name": "q1", "level": 3})]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param(
            raising(RuntimeError("no token")),
            "RuntimeError: no token",
            id="factory_raises/other_error",
        ),
        pytest.param(
            raising(ConfigError("[[exits]] x y: bad")),
            "[[exits]] x y: bad",
            id="factory_raises/config_error",
        ),
        pytest.param(lambda c, o: object(), "has no name and deliver()", id="not_a_module/object"),
        pytest.param(
            lambda c, o: PassPolicy("x"), "has no name and deliver()", id="not_a_module/a_policy"
        ),
        pytest.param("create", "is not callable", id="not_a_factory/string"),
    ],
)
def test_broken_exit_plugins_stop_the_start_naming_them(
    register: Register, target: object, message: str
) -> None:
    register("certforge.exits", "broken", target)
    with pytest.raises(ConfigError) as err:
        plugins.load_exit_modules(exits_config(ExitConfig(name="x", type="broken")))
    assert str(err.value).startswith("exit module 'x' (broken): ")
    assert message in str(err.value)


def test_exit_with_a_synchronous_close_is_refused_at_load(register: Register) -> None:
    class SyncClose(QuietExit):
        def close(self) -> None:
            pass

    register("certforge.exits", "syncclose", lambda c, o: SyncClose("x"))
    with pytest.raises(ConfigError, match=r"^exit module 'x' \(syncclose\): close\(\)"):
        plugins.load_exit_modules(exits_config(ExitConfig(name="x", type="syncclose")))


def test_entry_point_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.EntryPoint("gone", "certforge_test_missing_module:create", "certforge.exits")
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [real])
    with pytest.raises(ConfigError) as err:
        plugins.load_exit_modules(exits_config(ExitConfig(name="gone", type="gone")))
    assert str(err.value).startswith(
        "exit module 'gone' (gone): cannot load certforge_test_missing_module:create: "
        "ModuleNotFoundError"
    )


def test_a_name_claimed_by_two_distributions_is_refused(register: Register) -> None:
    register("certforge.exits", "webhook", QuietExit, value="other.pkg:create")
    with pytest.raises(ConfigError, match=r"several entry points in certforge.exits"):
        plugins.load_exit_modules(
            exits_config(
                ExitConfig(name="w", type="webhook", options={"url": "https://example.com"})
            )
        )


# Policy modules


def test_policy_modules_load_in_config_order_with_their_options(register: Register) -> None:
    first, second = RecordingFactory(PassPolicy), RecordingFactory(PassPolicy)
    register("certforge.policies", "second", second)
    register("certforge.policies", "first", first)
    config = policy_config("second", "first", first={"max": 3})
    modules = plugins.load_policy_modules(config)
    assert modules == [*second.made, *first.made]  # the order they will decide in
    assert second.calls == [(config, {})]
    assert first.calls == [(config, {"max": 3})]


def test_unknown_policy_module_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        plugins.load_policy_modules(policy_config("foo"))
    assert str(err.value) == "policy module 'foo': no entry point in certforge.policies"


def test_options_for_a_module_not_in_the_chain_are_refused(register: Register) -> None:
    register("certforge.policies", "first", RecordingFactory(PassPolicy))
    with pytest.raises(ConfigError, match=r"^\[policy\] options: 'frist' is not one of"):
        plugins.load_policy_modules(policy_config("first", frist={"max": 3}))


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param(
            raising(ValueError("bad regex")),
            "ValueError: bad regex",
            id="factory_raises/other_error",
        ),
        pytest.param(
            raising(ConfigError("max: must be positive")),
            "max: must be positive",
            id="factory_raises/config_error",
        ),
        pytest.param(
            lambda c, o: QuietExit("x"), "has no name and decide()", id="not_a_module/an_exit"
        ),
    ],
)
def test_broken_policy_plugins_stop_the_start_naming_them(
    register: Register, target: object, message: str
) -> None:
    register("certforge.policies", "broken", target)
    with pytest.raises(ConfigError) as err:
        plugins.load_policy_modules(policy_config("broken"))
    assert str(err.value).startswith("policy module 'broken': ")
    assert message in str(err.value)


def test_the_default_chain_is_the_profiles_entry_point() -> None:
    """``profiles`` (policies/profiles.py) is the default chain. Until that module exists the
    loader must refuse to start naming it; once it does, it must load as a policy module."""
    if importlib.util.find_spec("policies.profiles") is None:
        with pytest.raises(
            ConfigError,
            match=r"^policy module 'profiles': cannot load "
            r"policies.profiles:create: ModuleNotFoundError",
        ):
            plugins.load_policy_modules(Config())
        return
    [module] = plugins.load_policy_modules(Config())
    assert isinstance(module.name, str)
    policy: PolicyModule = module
    assert callable(policy.decide)
