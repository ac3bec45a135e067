"""The HTTPS listener's client-certificate hook (server/clientauth.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from server.clientauth import load_trust_anchors, request_client_certificates
from server.errors import ConfigError


def test_hook_installs_on_this_python_and_keeps_the_mode() -> None:
    """If this fails, untrusted client certificates would fail the TLS handshake instead of
    getting EST's 403: the fallback must not be reached silently on the supported build."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert request_client_certificates(context, []) is True
    assert context.verify_mode is ssl.CERT_OPTIONAL
    context.verify_mode = ssl.CERT_OPTIONAL  # setting it again keeps the installed callback


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read", id="anchors/missing_file"),
        pytest.param(b"not a certificate", "no PEM certificate", id="anchors/not_pem"),
    ],
)
def test_bad_trust_anchor_files_name_the_key(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "anchors.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_trust_anchors([Path("anchors.pem")], tmp_path)
    assert "[est] trust_anchors" in str(raised.value)
