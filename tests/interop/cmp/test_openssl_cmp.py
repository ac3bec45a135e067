"""``openssl cmp`` (OpenSSL 3.x, the real client) against the CMP front end."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import timedelta
from pathlib import Path

from aiohttp import ClientResponse, ClientSession
from cryptography import x509

from protocols.cmp.failinfo import FailInfo
from protocols.cmp.messages import Message, read_message
from protocols.cmp.transactions import TRANSACTION_KIND
from server.model import (
    AuthMethod,
    CertStatus,
    Requester,
    RequestQuery,
    RequestRecord,
    RevocationReason,
    Status,
)
from tests.interop.cmp.conftest import CMPServer

PATH = ".well-known/cmp"


def new_key(path: Path) -> Path:
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


def new_csr(directory: Path, name: str) -> None:
    subprocess.run(
        ["openssl", "req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}",
         "-out", f"{name}.csr"],
        cwd=directory, check=True, capture_output=True,
    )  # fmt: skip


async def enroll_ir(server: CMPServer, name: str = "dev1", *extra: str) -> tuple[int, str]:
    reference, secret, _ = await server.secrets.create()
    new_key(server.dir / f"{name}.key")
    return await server.openssl(
        "-cmd", "ir", "-path", PATH, "-ref", reference, "-secret", f"pass:{secret}",
        "-newkey", f"{name}.key", "-subject", f"/CN={name}", "-certout", f"{name}.pem",
        "-out_trusted", str(server.root_pem), *extra,
    )  # fmt: skip


async def test_ir_with_a_one_time_secret(cmp_server: CMPServer) -> None:
    code, out = await enroll_ir(cmp_server)
    assert code == 0, out
    # openssl checked the MAC of ip and pkiConf, and the new certificate against root.pem.
    assert "received PKICONF" in out
    cert = x509.load_pem_x509_certificate((cmp_server.dir / "dev1.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dev1"


async def signed(server: CMPServer, *args: str) -> tuple[int, str]:
    """A request signed with dev1's certificate; answers verified against root.pem."""
    return await server.openssl(
        "-path", PATH, "-cert", "dev1.pem", "-key", "dev1.key",
        "-trusted", str(server.root_pem), *args,
    )  # fmt: skip


async def test_cr_signed_with_the_enrolled_certificate(cmp_server: CMPServer) -> None:
    assert (await enroll_ir(cmp_server))[0] == 0
    new_key(cmp_server.dir / "cr.key")
    code, out = await signed(
        cmp_server, "-cmd", "cr", "-newkey", "cr.key", "-subject", "/CN=dev1", "-certout",
        "cr.pem",
    )  # fmt: skip
    assert code == 0, out
    cert = x509.load_pem_x509_certificate((cmp_server.dir / "cr.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dev1"


async def test_kur_to_a_new_key(cmp_server: CMPServer) -> None:
    assert (await enroll_ir(cmp_server))[0] == 0
    old = x509.load_pem_x509_certificate((cmp_server.dir / "dev1.pem").read_bytes())
    new_key(cmp_server.dir / "kur.key")
    code, out = await signed(cmp_server, "-cmd", "kur", "-newkey", "kur.key", "-certout", "kur.pem")
    assert code == 0, out
    new = x509.load_pem_x509_certificate((cmp_server.dir / "kur.pem").read_bytes())
    assert new.subject == old.subject
    assert new.public_key() != old.public_key()
    requests = await cmp_server.store.find_requests(RequestQuery())
    renewals = [r.vouched.renewal_of for r in requests if r.vouched.renewal_of is not None]
    assert renewals == [old.serial_number]


async def test_kur_with_the_same_key_is_refused(cmp_server: CMPServer) -> None:
    assert (await enroll_ir(cmp_server))[0] == 0
    code, out = await signed(cmp_server, "-cmd", "kur", "-newkey", "dev1.key", "-certout", "k.pem")
    assert code != 0
    assert "badCertTemplate" in out


async def test_p10cr_with_an_openssl_csr(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    new_key(cmp_server.dir / "p10.key")
    new_csr(cmp_server.dir, "p10")
    code, out = await cmp_server.openssl(
        "-cmd", "p10cr", "-path", PATH, "-ref", reference, "-secret", f"pass:{secret}",
        "-csr", "p10.csr", "-certout", "p10.pem", "-out_trusted", str(cmp_server.root_pem),
    )  # fmt: skip
    assert code == 0, out
    cert = x509.load_pem_x509_certificate((cmp_server.dir / "p10.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=p10"


async def test_rr_revokes_the_signers_certificate(cmp_server: CMPServer) -> None:
    assert (await enroll_ir(cmp_server))[0] == 0
    cert = x509.load_pem_x509_certificate((cmp_server.dir / "dev1.pem").read_bytes())
    code, out = await signed(cmp_server, "-cmd", "rr", "-oldcert", "dev1.pem", "-revreason", "1")
    assert code == 0, out
    record = await cmp_server.store.get_certificate(cert.serial_number)
    assert record.status is CertStatus.REVOKED
    assert record.revocation_reason is RevocationReason.KEY_COMPROMISE
    # Revoked, its certificate no longer signs anything here.
    code, out = await signed(cmp_server, "-cmd", "rr", "-oldcert", "dev1.pem",
                             "-unprotected_errors")  # fmt: skip
    assert code != 0
    assert "certRevoked" in out


async def test_genm_ca_certificates(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    code, out = await cmp_server.openssl(
        "-cmd", "genm", "-path", PATH, "-ref", reference, "-secret", f"pass:{secret}",
        "-infotype", "caCerts", "-verbosity", "7",
    )  # fmt: skip
    assert code == 0, out
    assert "received GENP" in out
    # Reading does not use up the secret.
    assert await cmp_server.secrets.secret_for(reference.encode()) is not None


async def test_a_held_request_is_polled_until_approved(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    new_key(cmp_server.dir / "held.key")
    new_csr(cmp_server.dir, "held")
    client = asyncio.create_task(
        cmp_server.openssl(
            "-cmd", "p10cr", "-path", f"{PATH}/p/manual", "-ref", reference,
            "-secret", f"pass:{secret}", "-csr", "held.csr", "-certout", "held.pem",
            "-out_trusted", str(cmp_server.root_pem), "-total_timeout", "30",
        )
    )  # fmt: skip
    pending = await wait_for_pending(cmp_server)
    await wait_for_poll(cmp_server, pending.transaction_id or "")
    await cmp_server.engine.approve(pending.id, by=Requester(AuthMethod.TOKEN, "admin"))
    code, out = await client
    assert code == 0, out
    assert "received POLLREP" in out
    assert (cmp_server.dir / "held.pem").exists()


async def wait_for_pending(server: CMPServer) -> RequestRecord:
    async with asyncio.timeout(20):
        while True:
            found = await server.store.find_requests(RequestQuery(status=Status.PENDING))
            if found:
                return found[0]
            await asyncio.sleep(0.05)


async def wait_for_poll(server: CMPServer, transaction_id: str) -> None:
    """Until a pollReq was answered pollRep: the transaction moved past WAITING's write."""
    async with asyncio.timeout(20):
        while True:
            doc = await server.store.get_doc(TRANSACTION_KIND, transaction_id.removeprefix("cmp-"))
            if doc.version >= 3:
                return
            await asyncio.sleep(0.05)


# ------------------------------------------------------------------ bad input
async def test_wrong_mac_is_bad_message_check_and_spends_nothing(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    new_key(cmp_server.dir / "w.key")
    args = ("-cmd", "ir", "-path", PATH, "-ref", reference, "-newkey", "w.key",
            "-subject", "/CN=w", "-certout", "w.pem",
            "-out_trusted", str(cmp_server.root_pem))  # fmt: skip
    code, out = await cmp_server.openssl(*args, "-secret", "pass:wrong", "-unprotected_errors")
    assert code != 0
    assert "badMessageCheck" in out
    code, out = await cmp_server.openssl(*args, "-secret", f"pass:{secret}")
    assert code == 0, out


async def test_unknown_profile_spends_nothing(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    new_key(cmp_server.dir / "u.key")
    args = ("-cmd", "ir", "-ref", reference, "-secret", f"pass:{secret}", "-newkey", "u.key",
            "-subject", "/CN=u", "-certout", "u.pem",
            "-out_trusted", str(cmp_server.root_pem))  # fmt: skip
    code, out = await cmp_server.openssl("-path", f"{PATH}/p/nope", *args)
    assert code != 0
    assert "badRequest" in out
    code, out = await cmp_server.openssl("-path", PATH, *args)
    assert code == 0, out


async def test_a_used_secret_is_refused(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    results = []
    for name in ("a", "b"):
        new_key(cmp_server.dir / f"{name}.key")
        results.append(
            await cmp_server.openssl(
                "-cmd", "ir", "-path", PATH, "-ref", reference, "-secret", f"pass:{secret}",
                "-newkey", f"{name}.key", "-subject", f"/CN={name}", "-certout", f"{name}.pem",
                "-out_trusted", str(cmp_server.root_pem), "-unprotected_errors",
            )
        )  # fmt: skip
    (first, out_a), (second, out_b) = results
    assert first == 0, out_a
    assert second != 0
    assert "notAuthorized" in out_b


async def test_stale_message_time_is_bad_time(cmp_server: CMPServer) -> None:
    cmp_server.clock.offset = timedelta(hours=1)
    code, out = await enroll_ir(cmp_server, "late")
    assert code != 0
    assert "badTime" in out


async def test_replayed_transaction_id(cmp_server: CMPServer) -> None:
    reference, secret, _ = await cmp_server.secrets.create()
    new_key(cmp_server.dir / "r.key")
    code, out = await cmp_server.openssl(
        "-cmd", "ir", "-path", PATH, "-ref", reference, "-secret", f"pass:{secret}",
        "-newkey", "r.key", "-subject", "/CN=r", "-certout", "r.pem", "-implicit_confirm",
        "-reqout", "r-ir.der", "-out_trusted", str(cmp_server.root_pem),
    )  # fmt: skip
    assert code == 0, out
    answer = await post(cmp_server, (cmp_server.dir / "r-ir.der").read_bytes())
    assert answer.status == 200
    reply = read_message(await answer.read())
    assert reply.body_type == "error"
    assert fail_bits(reply) == {FailInfo.TRANSACTION_ID_IN_USE}


async def test_truncated_der_is_http_400(cmp_server: CMPServer) -> None:
    answer = await post(cmp_server, bytes.fromhex("3082012c3081"))
    assert answer.status == 400
    answer = await post(cmp_server, b"\x30\x00", content_type="text/plain")
    assert answer.status == 415


async def post(
    server: CMPServer, body: bytes, *, content_type: str = "application/pkixcmp"
) -> ClientResponse:
    async with ClientSession() as session:
        response = await session.post(
            f"http://{server.url}/{PATH}", data=body, headers={"Content-Type": content_type}
        )
        await response.read()
        return response


def fail_bits(msg: Message) -> set[FailInfo]:
    bits = msg.body["pKIStatusInfo"]["failInfo"]
    return {FailInfo(i) for i, bit in enumerate(bits) if bit}
