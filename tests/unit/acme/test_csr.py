"""finalize's account-key check (RFC 8555 §11.1) against a real store: the CSR's key is
looked up by its thumbprint among the keys accounts use now and the ones they rolled over
from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from protocols.acme.csr import refuse_account_key
from protocols.acme.jws import thumbprint_of
from protocols.acme.problems import ACMEProblem, ProblemType
from protocols.acme.records import ACCOUNT_KEY, OLD_ACCOUNT_KEY
from server.ca.csr import verify_csr
from server.model import Document
from server.store.sqlite import SQLiteStore
from tests.unit.factories import make_csr


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{tmp_path / 'certforge.db'}", consumers=[])
    await s.open()
    yield s
    await s.close()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(ACCOUNT_KEY, id="bad_csr/current_account_key"),
        pytest.param(OLD_ACCOUNT_KEY, id="bad_csr/rolled_over_account_key"),
    ],
)
async def test_an_account_key_is_bad_csr(store: SQLiteStore, kind: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    thumbprint = thumbprint_of(key.public_key())
    assert thumbprint is not None
    await store.put_doc(Document(kind, thumbprint, {"account": "acct-1"}))
    with pytest.raises(ACMEProblem) as refused:
        await refuse_account_key(store, verify_csr(make_csr(key=key)))
    assert refused.value.type is ProblemType.BAD_CSR


async def test_a_key_of_its_own_passes(store: SQLiteStore) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    thumbprint = thumbprint_of(other.public_key())
    assert thumbprint is not None
    await store.put_doc(Document(ACCOUNT_KEY, thumbprint, {"account": "acct-1"}))
    await refuse_account_key(store, verify_csr(make_csr()))
