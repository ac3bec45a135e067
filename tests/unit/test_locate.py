"""How the admin client finds its server: the order of --url, the configuration file,
$CERTFORGE_CONFIG, the data directory's server.json and the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.config import Config, HostPort
from server.errors import ConfigError
from server.locate import (
    CONFIG_ENV,
    DEFAULT_URL,
    SERVER_FILE,
    find_server,
    first_start_message,
    local_url,
    record_server,
)


def write_config(path: Path, data_dir: Path, port: int) -> Path:
    path.write_text(
        f'[server]\ndata_dir = "{data_dir}"\nhttps_listen = "127.0.0.1:{port}"\n'
        f'public_https_url = "https://ca.example:{port}"\n'
    )
    return path


def record(data_dir: Path, url: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / SERVER_FILE).write_text(json.dumps({"url": url}))


def test_url_option_beats_everything(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "d", 9443)
    record(tmp_path / "d", "https://127.0.0.1:7443")
    target = find_server(config=str(config), data_dir=None, url="https://x:1/", environ={})
    assert (target.url, target.data_dir) == ("https://x:1", tmp_path / "d")


def test_config_gives_listener_and_data_dir(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "d", 9443)
    record(tmp_path / "d", "https://127.0.0.1:7443")  # the config is asked first
    target = find_server(config=str(config), data_dir=None, url=None, environ={})
    assert (target.url, target.data_dir) == ("https://127.0.0.1:9443", tmp_path / "d")


def test_environment_names_the_config_and_the_option_beats_it(tmp_path: Path) -> None:
    env = {CONFIG_ENV: str(write_config(tmp_path / "env.toml", tmp_path / "e", 9444))}
    assert find_server(config=None, data_dir=None, url=None, environ=env).url.endswith(":9444")
    option = write_config(tmp_path / "opt.toml", tmp_path / "o", 9445)
    target = find_server(config=str(option), data_dir=None, url=None, environ=env)
    assert target.url.endswith(":9445")


def test_data_dir_option_beats_the_config_s(tmp_path: Path) -> None:
    """As for ``certforge serve --config C --data-dir D``: C's listener, D's files."""
    config = write_config(tmp_path / "c.toml", tmp_path / "d", 9443)
    target = find_server(config=str(config), data_dir=str(tmp_path / "x"), url=None, environ={})
    assert (target.url, target.data_dir) == ("https://127.0.0.1:9443", tmp_path / "x")


def test_data_dir_alone_uses_its_server_json(tmp_path: Path) -> None:
    record(tmp_path / "d", "https://127.0.0.1:7443/")
    target = find_server(config=None, data_dir=str(tmp_path / "d"), url=None, environ={})
    assert target.url == "https://127.0.0.1:7443"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="absent"),
        pytest.param("{not json", id="bad/not_json"),
        pytest.param('{"url": "http://127.0.0.1:8080"}', id="bad/not_https"),
        pytest.param("[1]", id="bad/not_an_object"),
    ],
)
def test_without_a_usable_server_json_the_default(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / SERVER_FILE).write_text(content)
    target = find_server(config=None, data_dir=str(tmp_path), url=None, environ={})
    assert target.url == DEFAULT_URL


def test_a_bad_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        find_server(config=str(tmp_path / "none.toml"), data_dir=None, url=None, environ={})


@pytest.mark.parametrize(
    ("host", "url"),
    [
        pytest.param("127.0.0.1", "https://127.0.0.1:1", id="ipv4"),
        pytest.param("0.0.0.0", "https://127.0.0.1:1", id="wildcard/ipv4"),  # noqa: S104 - a listener address, not a bind
        pytest.param("::", "https://localhost:1", id="wildcard/ipv6"),
        pytest.param("::1", "https://[::1]:1", id="ipv6"),
        pytest.param("ca.example", "https://ca.example:1", id="name"),
    ],
)
def test_local_url(host: str, url: str) -> None:
    assert local_url(HostPort(host, 1)) == url


def test_record_server_is_what_find_server_reads(tmp_path: Path) -> None:
    config = Config().with_data_dir(tmp_path)
    record_server(config, config_path=None)
    assert find_server(config=None, data_dir=str(tmp_path), url=None, environ={}).url == (
        "https://127.0.0.1:8443"
    )


def test_first_start_message_says_where_everything_is(tmp_path: Path) -> None:
    text = first_start_message(Config().with_data_dir(tmp_path), prog="certforge")
    for needed in (
        str(tmp_path / "root.pem"),
        str(tmp_path / "admin.token"),
        "https://127.0.0.1:8443",
        "http://127.0.0.1:8080",
        f"certforge cert list --data-dir {tmp_path}",
        "Stop with Ctrl-C (SIGTERM)",
    ):
        assert needed in text
    assert not text.startswith("{")
