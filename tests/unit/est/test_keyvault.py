"""Server-generated keys kept sealed for their retry (``protocols.est.keyvault``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from protocols.est import keyvault
from protocols.est.keyvault import KeySeal
from server.errors import ConfigError, NotFound
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock


def pkcs8() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{tmp_path / 'db.sqlite'}", consumers=["test"])
    await s.open()
    yield s
    await s.close()


def test_the_sealing_key_is_made_once_private_and_shared_by_racing_workers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / keyvault.KEY_FILE
    with ThreadPoolExecutor(8) as pool:
        seals = list(pool.map(lambda _: KeySeal.load_or_create(path), range(16)))
    assert len({s.key for s in seals}) == 1
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [keyvault.KEY_FILE]  # no temporary left


def test_a_sealing_key_file_of_the_wrong_size_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / keyvault.KEY_FILE
    path.write_bytes(b"short")
    with pytest.raises(ConfigError):
        KeySeal.load_or_create(path)


@pytest.mark.parametrize(
    ("context", "tamper"),
    [
        pytest.param("other-document", False, id="moved_to_another_document"),
        pytest.param("doc", True, id="ciphertext_changed"),
    ],
)
def test_a_sealed_key_opens_only_unchanged_and_in_place(context: str, tamper: bool) -> None:
    seal = KeySeal(b"k" * 32)
    sealed = seal.seal(b"secret", "doc")
    assert seal.open(sealed, "doc") == b"secret"
    if tamper:
        sealed = sealed[:-2] + ("00" if sealed[-2:] != "00" else "01")
    with pytest.raises(InvalidTag):
        seal.open(sealed, context)


async def test_kept_sealed_loaded_then_discarded(store: SQLiteStore) -> None:
    seal, key = KeySeal(b"s" * 32), pkcs8()
    doc_id = await keyvault.keep(store, FakeClock(), seal, key)
    doc = await store.get_doc(keyvault.KEY_KIND, doc_id)
    assert key.hex() not in str(doc.data)
    assert await keyvault.load(store, seal, doc_id) == key
    # Another server's seal (a different key file) cannot open it: it is as good as gone.
    with pytest.raises(NotFound):
        await keyvault.load(store, KeySeal(b"x" * 32), doc_id)
    await keyvault.discard(store, doc_id)
    await keyvault.discard(store, doc_id)  # twice is fine (two retries raced)
    with pytest.raises(NotFound):
        await keyvault.load(store, seal, doc_id)
