"""Reading openssl's PKIMessage, the header rules, and answers read back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from protocols.cmp.failinfo import CMPFailure, FailInfo, NotAPKIMessage, PKIStatus
from protocols.cmp.messages import (
    HeaderRules,
    Reply,
    check_header,
    check_time,
    encode_message,
    error_body,
    new_header,
    read_message,
)

FIXTURE = Path(__file__).parents[2] / "testdata" / "cmp" / "openssl-3.0-ir-pbm.der"
SENT_AT = datetime(2026, 12, 2, 6, 36, 59, tzinfo=UTC)


def name_der(cn: str) -> bytes:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]).public_bytes()


def test_openssl_ir_is_read() -> None:
    msg = read_message(FIXTURE.read_bytes())
    h = msg.header
    assert (h.pvno, msg.body_type, h.sender_kid) == (2, "ir", b"REF123")
    assert h.sender_name == name_der("dev1")
    assert h.message_time == SENT_AT
    assert h.transaction_id is not None and len(h.transaction_id) == 16
    assert h.sender_nonce is not None and len(h.sender_nonce) == 16
    assert h.recip_nonce is None and not h.implicit_confirm
    assert len(msg.body) == 1 and msg.extra_certs == ()
    check_header(h)
    check_time(h, HeaderRules(SENT_AT + timedelta(minutes=4), timedelta(minutes=5)))


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(FIXTURE.read_bytes()[:-1], id="truncated"),
        pytest.param(FIXTURE.read_bytes() + b"\x00", id="trailing_octet"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30\x80\x00\x00", id="indefinite_length_ber"),
        pytest.param(b"\x30" * 70_000, id="oversized"),
    ],
)
def test_not_a_pki_message(der: bytes) -> None:
    with pytest.raises(NotAPKIMessage):
        read_message(der)


@pytest.mark.parametrize(
    ("change", "fail_info"),
    [
        pytest.param({"pvno": 1}, FailInfo.UNSUPPORTED_VERSION, id="pvno_1"),
        pytest.param({"transaction_id": b"short"}, FailInfo.BAD_DATA_FORMAT, id="short_tid"),
        pytest.param({"transaction_id": None}, FailInfo.BAD_DATA_FORMAT, id="no_tid"),
        pytest.param({"sender_nonce": b"x" * 8}, FailInfo.BAD_SENDER_NONCE, id="short_nonce"),
        pytest.param({"recip_nonce": b"x"}, FailInfo.BAD_RECIPIENT_NONCE, id="short_recip"),
        pytest.param({"sender_name": None}, FailInfo.BAD_DATA_FORMAT, id="sender_not_dn"),
    ],
)
def test_header_rules(change: dict[str, object], fail_info: FailInfo) -> None:
    header = replace(read_message(FIXTURE.read_bytes()).header, **change)  # type: ignore[arg-type]
    with pytest.raises(CMPFailure) as exc:
        check_header(header)
    assert exc.value.fail_info is fail_info


@pytest.mark.parametrize("offset", [timedelta(minutes=6), -timedelta(minutes=6)], ids=str)
def test_message_time_window(offset: timedelta) -> None:
    header = read_message(FIXTURE.read_bytes()).header
    with pytest.raises(CMPFailure) as exc:
        check_time(header, HeaderRules(SENT_AT + offset, timedelta(minutes=5)))
    assert exc.value.fail_info is FailInfo.BAD_TIME


def test_error_answer_reads_back() -> None:
    request = read_message(FIXTURE.read_bytes()).header
    header = new_header(request, Reply(name_der("CA"), SENT_AT, implicit_confirm=True))
    body = error_body(PKIStatus.REJECTION, FailInfo.BAD_POP, "no")
    answer = read_message(encode_message(header, body, protection=b"\x01" * 20))
    h = answer.header
    assert (h.transaction_id, h.recip_nonce) == (request.transaction_id, request.sender_nonce)
    assert h.sender_nonce != request.sender_nonce and h.implicit_confirm
    assert answer.protection == b"\x01" * 20
    info = answer.body["pKIStatusInfo"]
    assert int(info["status"]) == PKIStatus.REJECTION
    assert [i for i, bit in enumerate(info["failInfo"]) if bit] == [FailInfo.BAD_POP]
    assert str(info["statusString"][0]) == "no"
