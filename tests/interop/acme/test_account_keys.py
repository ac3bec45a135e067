"""finalize refuses a CSR for an ACME account's key, or for one of certforge's own keys, with
certbot's ``acme`` library as the client against the real server (External Account Binding
required, so that a spent credential would show).

RFC 8555 §11.1: servers "MUST verify that a CSR submitted in a finalize request does not
contain a public key for any known account key pair". The refusal records nothing: the order
stays ready and a CSR with a key of its own still finalizes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from acme import challenges, messages
from acme.client import ClientNetwork, ClientV2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from josepy.jwa import ES256, ES384, RS256
from josepy.jwk import JWK, JWKEC, JWKRSA

from tests.integration.server import CertforgeServer
from tests.integration.test_own_keys import (
    certificates_of,
    errors_logged_since,
    log_offset,
    own_key,
)
from tests.interop.acme.challtestsrv import ChallTestSrv
from tests.interop.acme.client import make_csr
from tests.interop.acme.conftest import acme_server, http01_port
from tests.interop.acme.responder import http01_responder

AccountPrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    srv = acme_server(tmp_path_factory.mktemp("acme-keys"), challtestsrv, "eab_required = true")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REQUESTS_CA_BUNDLE", str(srv.root))  # the acme library's requests
        yield srv
    assert srv.stop() == 0, srv.log_tail()


@dataclass
class Account:
    private: AccountPrivateKey
    jwk: JWK
    client: ClientV2
    regr: messages.RegistrationResource


def eab_credentials(server: CertforgeServer) -> tuple[str, str]:
    kid, hmac_key = server.cli("acme", "eab", "create", check=True).stdout.split()
    return kid, hmac_key


def register(
    server: CertforgeServer,
    private: AccountPrivateKey,
    credentials: tuple[str, str] | None = None,
) -> Account:
    jwk: JWK
    if isinstance(private, ec.EllipticCurvePrivateKey):
        jwk, alg = JWKEC(key=private), ES384 if private.curve.key_size == 384 else ES256
    else:
        jwk, alg = JWKRSA(key=private), RS256
    net = ClientNetwork(jwk, alg=alg, user_agent="certforge-tests")
    client = ClientV2(ClientV2.get_directory(f"{server.url}/acme/directory", net), net)
    kid, hmac_key = credentials or eab_credentials(server)
    binding = messages.ExternalAccountBinding.from_data(
        account_public_key=jwk.public_key(), kid=kid, hmac_key=hmac_key, directory=client.directory
    )
    regr = client.new_account(
        messages.NewRegistration.from_data(
            terms_of_service_agreed=True, external_account_binding=binding
        )
    )
    return Account(private, jwk, client, regr)


def pem_csr(names: list[str], key: Any = None) -> bytes:
    der, _ = make_csr(names, key)
    return x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)


def ready_order(server: CertforgeServer, account: Account, names: list[str]) -> Any:
    """An order for ``names`` with every authorization validated over http-01."""
    order = account.client.new_order(pem_csr(names))
    answers: dict[str, str] = {}
    with http01_responder(http01_port(server), answers):
        for authz in order.authorizations:
            challb = next(
                c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            assert isinstance(challb.chall, challenges.HTTP01)
            response, validation = challb.chall.response_and_validation(account.jwk)
            answers[challb.chall.encode("token")] = validation
            account.client.answer_challenge(challb, response)
        order = account.client.poll_authorizations(order, deadline())
    assert order_status(account, order) == "ready"
    return order


def deadline() -> datetime:
    return datetime.now() + timedelta(seconds=30)


def order_status(account: Account, order: Any) -> str:
    # POST-as-GET (RFC 8555 §6.3): a null payload.
    answer = account.client.net.post(
        order.uri, None, new_nonce_url=account.client.directory["newNonce"]
    )
    return str(answer.json()["status"])


def refused_finalize(account: Account, order: Any, csr_pem: bytes) -> str:
    """finalize with ``csr_pem``, which must be refused; the problem's type."""
    with pytest.raises(messages.Error) as refused:
        account.client.begin_finalization(order.update(csr_pem=csr_pem))
    assert refused.value.code is not None
    return str(refused.value.code)


def finalized_key(account: Account, order: Any, key: AccountPrivateKey, names: list[str]) -> Any:
    done = account.client.finalize_order(order.update(csr_pem=pem_csr(names, key)), deadline())
    return x509.load_pem_x509_certificate(done.fullchain_pem.encode()).public_key()


def test_finalize_refuses_any_account_key_and_the_order_still_finalizes(
    server: CertforgeServer,
) -> None:
    offset = log_offset(server)
    alice = register(server, ec.generate_private_key(ec.SECP256R1()))
    bob = register(server, rsa.generate_private_key(65537, 2048))
    bob.client.deactivate_registration(bob.regr)  # a deactivated account's key counts too
    unused = eab_credentials(server)
    names = ["keys.example.com"]
    order = ready_order(server, alice, names)
    assert refused_finalize(alice, order, pem_csr(names, alice.private)) == "badCSR"
    assert refused_finalize(alice, order, pem_csr(names, bob.private)) == "badCSR"
    # Nothing was recorded: no certificate for either key, the order is still ready.
    assert certificates_of(server, alice.private) == []
    assert certificates_of(server, bob.private) == []
    assert order_status(alice, order) == "ready"
    own = ec.generate_private_key(ec.SECP256R1())
    assert finalized_key(alice, order, own, names) == own.public_key()
    # EAB is untouched: a credential made before the refusals still binds a new account.
    register(server, ec.generate_private_key(ec.SECP384R1()), unused)
    assert errors_logged_since(server, offset) == []


def test_finalize_refuses_the_issuing_ca_key_as_bad_public_key(server: CertforgeServer) -> None:
    offset = log_offset(server)
    account = register(server, ec.generate_private_key(ec.SECP256R1()))
    names = ["ca-key.example.com"]
    order = ready_order(server, account, names)
    ca_key = own_key(server, "issuing_ca")
    assert refused_finalize(account, order, pem_csr(names, ca_key)) == "badPublicKey"
    assert certificates_of(server, ca_key) == []
    assert order_status(account, order) == "ready"
    own = ec.generate_private_key(ec.SECP256R1())
    assert finalized_key(account, order, own, names) == own.public_key()
    assert errors_logged_since(server, offset) == []
