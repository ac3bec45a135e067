"""Keys and CSRs made with the openssl command line, as a user would."""

from __future__ import annotations

from pathlib import Path

from tests.integration.server import run


def make_csr(
    work: Path, name: str, *, subject: str | None = None, sans: str | None = None, key: str = "ec"
) -> tuple[Path, Path]:
    key_path, csr_path = work / f"{name}.key", work / f"{name}.csr"
    if key == "ec":
        run(
            "openssl",
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            str(key_path),
        )
    elif key.startswith("rsa"):
        bits = key.removeprefix("rsa") or "2048"
        run(
            "openssl",
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            f"rsa_keygen_bits:{bits}",
            "-out",
            str(key_path),
        )
    else:
        run("openssl", "genpkey", "-algorithm", key, "-out", str(key_path))
    cmd = [
        "openssl",
        "req",
        "-new",
        "-key",
        str(key_path),
        "-out",
        str(csr_path),
        "-subj",
        subject if subject is not None else f"/CN={name}.example.test",
    ]
    if sans is None:
        sans = f"DNS:{name}.example.test"
    if sans:
        cmd += ["-addext", f"subjectAltName={sans}"]
    run(*cmd)
    return key_path, csr_path


def verify(root: Path, chain_pem: Path, purpose: str | None = None) -> str:
    """``openssl verify`` of the leaf (first in the file) with the rest as untrusted."""
    text = chain_pem.read_text()
    end = "-----END CERTIFICATE-----\n"
    leaf, rest = text.split(end, 1)
    leaf_path, rest_path = chain_pem.with_suffix(".leaf.pem"), chain_pem.with_suffix(".ca.pem")
    leaf_path.write_text(leaf + end)
    rest_path.write_text(rest)
    cmd = ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(rest_path)]
    if purpose:
        cmd += ["-purpose", purpose]
    return run(*cmd, str(leaf_path)).stdout
