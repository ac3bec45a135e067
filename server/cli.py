"""``certforge``: run the server, and the administrative client that talks to its admin API.

Exit status: 0 done, 1 refused or failed (one line on stderr), 2 usage (argparse).
The client finds the server from ``--url``, ``--config FILE`` (or ``$CERTFORGE_CONFIG``), or
the data directory's ``server.json``, and takes the token from ``--token`` or the data
directory's ``admin.token`` and its trust from ``root.pem`` (server/locate.py says the order).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.errors import ConfigError, StoreUnavailable
from server.frontend import installed
from server.locate import CONFIG_ENV, DEFAULT_URL, find_server

# An OpenSSL verification result (X509_V_ERR_*) that means another CA's certificate, as
# against one of this CA's that fails for another reason (expired, wrong name). 7, a bad
# signature: another certforge's root has the same name as this one.
UNKNOWN_ISSUER_CODES = frozenset({2, 7, 18, 19, 20, 21})
HOSTNAME_MISMATCH = 62
REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
    "aACompromise",
)


class Refused(Exception):
    """The server refused, or could not be reached: one line for stderr, exit 1."""


@dataclass
class Client:
    url: str
    token: str | None
    context: ssl.SSLContext
    trust: Path | None = None  # the root.pem loaded into context; None: the system's roots

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 - https URL given by the operator
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=30) as resp:  # noqa: S310
                return resp.status, _decode(resp.read(), resp.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            payload = _decode(exc.read(), exc.headers.get_content_type())
            detail = payload.get("detail") if isinstance(payload, dict) else str(payload)
            raise Refused(f"{detail or exc.reason} (HTTP {exc.code})") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise Refused(self.untrusted(reason)) from None
            raise Refused(f"cannot reach {self.url}: {reason}") from None

    def untrusted(self, error: ssl.SSLCertVerificationError) -> str:
        """One line for a server whose TLS certificate does not verify: most often another
        certforge, on the port this data directory's server was expected on."""
        if self.trust is None:
            return (
                f"cannot verify the server at {self.url}: no root.pem to trust "
                "(pass --data-dir or --config)"
            )
        if error.verify_code in UNKNOWN_ISSUER_CODES:
            return f"the server at {self.url} is not the CA of {self.trust}"
        if error.verify_code == HOSTNAME_MISMATCH:
            return f"the server at {self.url} has a TLS certificate for another name"
        return f"the server at {self.url}: its TLS certificate fails: {error.verify_message}"


def _decode(raw: bytes, ctype: str) -> Any:
    if ctype.endswith("json"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")
    return raw.decode(errors="replace")


def make_client(args: argparse.Namespace, *, admin: bool = True) -> Client:
    try:
        target = find_server(config=args.config, data_dir=args.data_dir, url=args.url)
    except ConfigError as exc:
        raise Refused(f"configuration: {exc}") from None
    token = args.token
    if token is None and admin:
        token_file = target.data_dir / "admin.token"
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError:
            raise Refused(
                f"no token: pass --token, --data-dir or --config (cannot read {token_file})"
            ) from None
    context = ssl.create_default_context()
    trust = target.root if target.root.exists() else None
    if trust is not None:
        context.load_verify_locations(cafile=str(trust))
    return Client(target.url, token, context, trust)


# ------------------------------------------------------------------ commands
def emit(args: argparse.Namespace, payload: Any, line: str) -> None:
    print(json.dumps(payload, indent=2) if args.json else line)


def cmd_request_submit(args: argparse.Namespace) -> None:
    from server.csrfile import NotACSR, read_csr

    try:
        csr = read_csr(Path(args.csr_file))
    except OSError as exc:
        raise Refused(f"cannot read {args.csr_file}: {exc.strerror}") from None
    except NotACSR as exc:
        raise Refused(str(exc)) from None
    client = make_client(args, admin=False)
    query = f"?profile={urllib.parse.quote(args.profile)}" if args.profile else ""
    _, body = client.call("POST", f"/api/v1/requests{query}", csr, "application/pkcs10")
    emit(args, body, f"{body['id']} {body['status']}")


def cmd_request_get(args: argparse.Namespace) -> None:
    client = make_client(args, admin=False)
    _, body = client.call("GET", f"/api/v1/requests/{urllib.parse.quote(args.id)}")
    if body["status"] != "issued":
        reason = f": {body['reason']}" if body.get("reason") else ""
        raise Refused(f"{body['status']}{reason}")
    pem = body["certificate"] + "".join(body["chain"])
    if args.out:
        Path(args.out).write_text(pem, encoding="utf-8")
        emit(args, body, f"{body['id']} issued {body['serial']} -> {args.out}")
    elif args.json:
        emit(args, body, "")
    else:
        sys.stdout.write(pem)


def cmd_request_list(args: argparse.Namespace) -> None:
    from server.cli_inventory import run_list

    run_list(args, "requests")


def cmd_request_show(args: argparse.Namespace) -> None:
    """A request: its CSR decoded, the policy's decision and draft, and its history."""
    from server.cli_inventory import run_request_show

    run_request_show(args)


def cmd_request_decide(action: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        payload = {"reason": args.reason} if getattr(args, "reason", None) else {}
        _, body = make_client(args).call(
            "POST", f"/api/v1/admin/requests/{urllib.parse.quote(args.id)}/{action}", payload
        )
        emit(args, body, f"{body['id']} {body['status']}")

    return run


def cmd_cert_list(args: argparse.Namespace) -> None:
    from server.cli_inventory import run_list

    run_list(args, "certificates")


def _serial_path(serial: str) -> str:
    return urllib.parse.quote(serial.replace(":", "").strip(), safe="")


def cmd_cert_revoke(args: argparse.Namespace) -> None:
    payload = {"reason": args.reason}
    if args.invalidity_date:
        payload["invalidity_date"] = args.invalidity_date
    _, body = make_client(args).call(
        "POST", f"/api/v1/admin/certificates/{_serial_path(args.serial)}/revoke", payload
    )
    emit(args, body, f"{body['serial']} revoked {body['revocation_reason']}")


def cmd_cert_release(args: argparse.Namespace) -> None:
    _, body = make_client(args).call(
        "POST", f"/api/v1/admin/certificates/{_serial_path(args.serial)}/unrevoke", {}
    )
    emit(args, body, f"{body['serial']} {body['status']}")


def cmd_cert_show(args: argparse.Namespace) -> None:
    """A certificate decoded, its status, chain and history (the events recorded for it)."""
    from server.cli_inventory import run_cert_show

    run_cert_show(args, _serial_path(args.serial))


def cmd_simple_post(
    path: str,
    render: Callable[[Any], str],
    payload: Callable[[argparse.Namespace], dict[str, Any]] = lambda a: {},
) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        _, body = make_client(args).call("POST", path, payload(args))
        emit(args, body, render(body))

    return run


def cmd_token_create(args: argparse.Namespace) -> None:
    payload: dict[str, Any] = {"name": args.name, "roles": args.role or ["requester"]}
    if args.expires is not None:
        payload["expires_in"] = args.expires
    _, body = make_client(args).call("POST", "/api/v1/admin/tokens", payload)
    emit(args, body, str(body["token"]))


def _token_line(t: dict[str, Any]) -> str:
    """``ID NAME ROLES STATE CREATED LAST_USED EXPIRES REVOKED``; ``-`` for none."""
    times = (t["created_at"], t["last_used_at"], t["expires_at"], t["revoked_at"])
    return " ".join(
        [t["id"], t["name"], ",".join(t["roles"]), t["state"], *(x or "-" for x in times)]
    )


def cmd_token_list(args: argparse.Namespace) -> None:
    _, body = make_client(args).call("GET", "/api/v1/admin/tokens")
    emit(args, body, "\n".join(_token_line(t) for t in body["tokens"]))


def cmd_token_revoke(args: argparse.Namespace) -> None:
    ref = urllib.parse.quote(args.name_or_id, safe="")
    _, body = make_client(args).call("POST", f"/api/v1/admin/tokens/{ref}/revoke", {})
    emit(args, body, f"{body['id']} {body['name']} revoked")


def cmd_token_rotate_bootstrap(args: argparse.Namespace) -> None:
    _, body = make_client(args).call("POST", "/api/v1/admin/tokens/bootstrap/rotate", {})
    old = f"; {body['revoked']['id']} revoked" if body["revoked"] else ""
    emit(args, body, f"{body['token']['id']} written to {body['path']}{old}")


def _crl_name(c: dict[str, Any]) -> str:
    """``default``, ``default/3`` (a partition) or ``default/delta``."""
    if c.get("delta_of") is not None:
        return f"{c['issuer']}/delta"
    return c["issuer"] if c.get("shard") is None else f"{c['issuer']}/{c['shard']}"


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the server's event loop: uvloop's where it is installed (Linux and macOS), which
    takes a good part off every request's cost, else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        asyncio.run(main)
    else:
        uvloop.run(main)


# A worker is a fresh interpreter reading its spec from standard input (server/workers.py
# says why it is not a fork).
WORKER_COMMAND = (sys.executable, "-c", "from server.cli import serve_worker; serve_worker()")


def serve_worker() -> None:
    """The entry point of one worker process started by ``run_workers``."""
    from server.app import serve
    from server.web.requestlog import setup_logging
    from server.workers import read_spec

    # Ctrl-C reaches the whole process group; the supervisor turns it into our SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    spec = read_spec()
    config = spec.config
    setup_logging(config.server.log_level, config.server.log_format)
    worker = spec.worker()
    try:
        run_loop(serve(config, worker))
    except BaseException:
        logging.getLogger("certforge").exception("worker %d failed", spec.index)
        raise SystemExit(1) from None


def cmd_serve(args: argparse.Namespace) -> None:
    from server.config import load_config
    from server.locate import when_ready
    from server.web.requestlog import setup_logging
    from server.workers import check_free, run_workers, share_metrics

    try:
        config = load_config(Path(args.config) if args.config else None)
    except ConfigError as exc:
        raise Refused(f"configuration: {exc}") from None
    if args.data_dir:
        config = config.with_data_dir(Path(args.data_dir))
    setup_logging(config.server.log_level, config.server.log_format)
    try:
        # A taken port is refused before a first start creates anything.
        check_free(config.server.https_listen)
        check_free(config.server.http_listen)
        ready = when_ready(config, config_path=Path(args.config) if args.config else None)
        if config.server.workers > 1:
            share_metrics(config.server.data_dir)  # before server.app imports prometheus
        from server.app import prepare, serve

        if config.server.workers > 1:
            run_loop(prepare(config))
            status = run_workers(config, WORKER_COMMAND, on_ready=ready)
            if status:
                raise Refused("a worker did not stop cleanly")
            return
        run_loop(serve(config, on_ready=ready))
    except ConfigError as exc:
        raise Refused(f"configuration: {exc}") from None
    except StoreUnavailable as exc:
        raise Refused(f"cannot start: {exc}") from None
    except OSError as exc:  # a listener's port in use, an unwritable data directory...
        where = f" ({exc.filename})" if exc.filename else ""
        raise Refused(f"cannot start: {exc.strerror or exc}{where}") from None


def cmd_config_example(args: argparse.Namespace) -> None:
    """What conf/certforge.example.toml leaves to the front ends: each one's own table."""
    sections = [f.section for f in installed() if f.section is not None]
    print("\n".join(s.example for s in sections), end="")


# -------------------------------------------------------------------- parser
class Commands:
    """The command line's groups, as front ends add theirs (``server.frontend.FrontEnd.cli``):
    ``group`` makes ``certforge NAME``, ``leaf`` a command in it, taking the common options
    (``--config``, ``--data-dir``, ``--url``, ``--token``, ``--json``) after its words."""

    def __init__(
        self, groups: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
    ) -> None:
        self._groups, self._common = groups, common

    def group(self, name: str, help_text: str) -> argparse._SubParsersAction[Any]:
        parser: argparse.ArgumentParser = self._groups.add_parser(name, help=help_text)
        return parser.add_subparsers(dest="cmd", required=True)

    def leaf(
        self,
        sub: argparse._SubParsersAction[Any],
        name: str,
        func: Callable[[argparse.Namespace], None],
        help_text: str,
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, parents=[self._common], help=help_text)
        p.set_defaults(func=func)
        return p


def build_parser() -> argparse.ArgumentParser:
    from server.cli_inventory import add_list_options

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", help=f"the server's TOML configuration file (default ${CONFIG_ENV})"
    )
    common.add_argument("--data-dir", help="data directory (token and root.pem)")
    common.add_argument(
        "--url", help=f"server URL (default: from the config or server.json, else {DEFAULT_URL})"
    )
    common.add_argument("--token", help="bearer token (default: DATA_DIR/admin.token)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="certforge", description="certforge CA server")
    groups = parser.add_subparsers(dest="group", required=True)

    serve = groups.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML configuration file")
    serve.add_argument("--data-dir", help="data directory (default ./certforge-data)")
    serve.set_defaults(func=cmd_serve)

    commands = Commands(groups, common)
    group, leaf = commands.group, commands.leaf

    req = group("request", "enrollment requests")
    p = leaf(req, "submit", cmd_request_submit, "submit a PKCS#10 CSR (PEM or DER)")
    p.add_argument("csr_file")
    p.add_argument("--profile")
    p = leaf(req, "get", cmd_request_get, "fetch the issued certificate and chain")
    p.add_argument("id")
    p.add_argument("--out")
    p = leaf(req, "list", cmd_request_list, "list requests")
    add_list_options(p, ("pending", "approved", "issued", "denied", "failed"))
    p = leaf(req, "show", cmd_request_show, "show a request: its CSR, decision and history")
    p.add_argument("id")
    leaf(req, "approve", cmd_request_decide("approve"), "approve a pending request").add_argument(
        "id"
    )
    p = leaf(req, "deny", cmd_request_decide("deny"), "deny a pending request")
    p.add_argument("id")
    p.add_argument("--reason")

    cert = group("cert", "certificates")
    p = leaf(cert, "list", cmd_cert_list, "list certificates")
    add_list_options(p, ("valid", "revoked", "expired"))
    p = leaf(cert, "revoke", cmd_cert_revoke, "revoke a certificate")
    p.add_argument("serial")
    p.add_argument("--reason", default="unspecified", choices=REVOCATION_REASONS)
    p.add_argument("--invalidity-date", help="ISO 8601 time the key is known to be unsafe since")
    p = leaf(cert, "release", cmd_cert_release, "release a certificate from certificateHold")
    p.add_argument("serial")
    p = leaf(cert, "show", cmd_cert_show, "show a certificate, its chain and history")
    p.add_argument("serial")

    crl = group("crl", "certificate revocation lists")
    p = leaf(
        crl,
        "publish",
        cmd_simple_post(
            "/api/v1/admin/crl/publish",
            lambda b: "\n".join(
                f"{_crl_name(c)} crl {c['number']} {c['entries']} entries" for c in b["crls"]
            ),
            lambda a: {
                **({"issuer": a.issuer} if a.issuer else {}),
                **({"delta": True} if a.delta else {}),
            },
        ),
        "issue fresh CRLs now (every CA's, or --issuer NAME's)",
    )
    p.add_argument("--issuer", help="only this CA's CRL")
    p.add_argument("--delta", action="store_true", help="delta CRLs (of the newest full ones)")

    token = group("token", "API tokens")
    p = leaf(token, "create", cmd_token_create, "create a bearer token and print it")
    p.add_argument("name")
    p.add_argument(
        "--role",
        action="append",
        help="administrator, operator, auditor or requester (repeat for several;"
        " default requester)",
    )
    p.add_argument("--expires", metavar="DURATION", help="lifetime such as 90m, 12h or 30d")
    leaf(token, "list", cmd_token_list, "list tokens (never their secrets)")
    leaf(token, "revoke", cmd_token_revoke, "revoke a token by id or name").add_argument(
        "name_or_id"
    )
    leaf(
        token,
        "rotate-bootstrap",
        cmd_token_rotate_bootstrap,
        "replace the server's admin.token and revoke the old one",
    )
    config = group("config", "the configuration file")
    leaf(
        config,
        "example",
        cmd_config_example,
        "print the installed front ends' tables, every key at its default",
    )
    for frontend in installed():
        if frontend.cli is not None:
            frontend.cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ConfigError as exc:  # a front end that does not load
        print(f"certforge: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except Refused as exc:
        print(f"certforge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
