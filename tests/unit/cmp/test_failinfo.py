"""The CMP error table covers every engine error kind."""

from __future__ import annotations

import pytest

from protocols.cmp.failinfo import FAIL_INFO, FailInfo, PKIStatus, failure_for
from server.errors import BadCSR, ErrorKind, RateLimited


def test_every_error_kind_has_a_fail_info() -> None:
    assert set(FAIL_INFO) == set(ErrorKind)


@pytest.mark.parametrize("kind", list(ErrorKind), ids=str)
def test_engine_errors_are_rejections(kind: ErrorKind) -> None:
    # A held request is an Outcome (waiting), never an error.
    assert FAIL_INFO[kind][0] is PKIStatus.REJECTION


def test_failure_for_keeps_the_detail() -> None:
    failure = failure_for(BadCSR("bad key"))
    assert failure.fail_info is FailInfo.BAD_CERT_TEMPLATE
    assert failure.detail == "bad key"
    assert failure_for(RateLimited("slow down")).fail_info is FailInfo.SYSTEM_UNAVAIL
