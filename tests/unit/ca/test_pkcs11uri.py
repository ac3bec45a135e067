"""Key names for a PKCS#11 token: labels and RFC 7512 URIs, and the ones refused at start."""

from __future__ import annotations

import pytest

from server.ca.pkcs11uri import PKCS11URI, parse_key_name
from server.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("issuing-ca", PKCS11URI(object="issuing-ca"), id="plain_label"),
        pytest.param(
            "pkcs11:object=issuing-ca;type=private",
            PKCS11URI(object="issuing-ca"),
            id="object_and_type",
        ),
        pytest.param("pkcs11:id=%01%02%ff", PKCS11URI(id=b"\x01\x02\xff"), id="id_bytes"),
        pytest.param(
            "pkcs11:token=certforge;object=My%20CA;id=%0A",
            PKCS11URI(object="My CA", id=b"\n", token="certforge"),
            id="token_label_and_id",
        ),
        pytest.param(
            "pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=1a2b;object=k",
            PKCS11URI(
                object="k", manufacturer="SoftHSM project", model="SoftHSM v2", serial="1a2b"
            ),
            id="token_identity",
        ),
        pytest.param("pkcs11:object=%C3%A9t%C3%A9", PKCS11URI(object="été"), id="utf8_label"),
    ],
)
def test_names_parse(name: str, expected: PKCS11URI) -> None:
    assert parse_key_name(name) == expected


@pytest.mark.parametrize(
    "uri",
    [
        PKCS11URI(object="issuing ca;1"),
        PKCS11URI(id=b"\x00\xff", token="t=1"),
        PKCS11URI(object="été", id=b"a", serial="42", model="m", manufacturer="x y"),
    ],
)
def test_str_parses_back(uri: PKCS11URI) -> None:
    assert parse_key_name(str(uri)) == uri


@pytest.mark.parametrize(
    ("name", "says"),
    [
        pytest.param("", "empty", id="empty_label"),
        pytest.param("pkcs11:", "names no key", id="names_nothing"),
        pytest.param("pkcs11:token=certforge", "names no key", id="token_only"),
        pytest.param("pkcs11:object=", "empty", id="empty_object"),
        pytest.param("pkcs11:object=a;object=b", "twice", id="attribute_twice"),
        pytest.param("pkcs11:object=a;type=cert", "type must be private", id="not_private"),
        pytest.param("pkcs11:object=a?pin-value=1234", "pin-value", id="pin_in_config"),
        pytest.param("pkcs11:object=a?pin-source=file:/etc/pin", "pin-source", id="pin_source"),
        pytest.param("pkcs11:object=a?module-path=/x.so", "module-path", id="module_per_key"),
        pytest.param("pkcs11:object=a;slot-id=1", "cannot match", id="slot_attribute"),
        pytest.param("pkcs11:object=a;x-vendor=1", "cannot match", id="vendor_attribute"),
        pytest.param("pkcs11:object=a b", "percent-encoding", id="unescaped_space"),
        pytest.param("pkcs11:object=%zz", "percent-encoding", id="bad_escape"),
        pytest.param("pkcs11:object", "not name=value", id="no_value"),
        pytest.param("pkcs11:object=%ff", "not UTF-8", id="label_not_utf8"),
        pytest.param("pkcs11:object=a#frag", "fragment", id="fragment"),
    ],
)
def test_refused_names_say_why_in_one_line(name: str, says: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_key_name(name)
    assert says in str(refused.value)
    assert "\n" not in str(refused.value)
