"""CA keys in a PKCS#11 token: a pool of logged-in sessions; keys generated and found there.

One ``TokenPool`` per token and process. Its first session logs in with the user PIN;
PKCS#11 login is per application and token, so later sessions share it.

One call into the module at a time per process: python-pkcs11 calls C_Initialize with
NULL arguments, which tells the module that the application will not call it from several
threads at once (PKCS#11 C_Initialize), and SoftHSM2 then takes no locks of its own: six
threads signing at once crashed the interpreter (SIGSEGV) without the pool's lock. So
``session()`` holds the pool's lock for its block, whether it runs on the event loop or in
an executor thread, and waits at most ``wait_seconds`` for it (then ``KeyUnavailable``).
Parallel signing comes from the worker processes, each with its own C_Initialize.

A token error (the token removed, its sessions invalidated, the device gone) discards the
session that met it and marks the pool broken: from then on every use raises
``KeyUnavailable`` (a 503 at each protocol's edge) until the pool has reconnected. The next
caller reconnects, at most once a ``retry_seconds``: a new session first, then C_Finalize
and C_Initialize of the module (SoftHSM2, for one, sees a token directory that came back
only after a restart of the module). A PIN the token refuses on reconnection is not tried
again, so that retries cannot lock the user PIN.

The python-pkcs11 module object is one per module path and process (``pkcs11.lib`` keeps
it), so a process should hold one ``TokenPool`` per module: reconnecting one pool restarts
the module under any other.

Keys: ``generate_key`` makes a key pair on the token (private key sensitive and not
extractable); ``find_key`` finds one by label or RFC 7512 URI (``server.ca.pkcs11uri``)
and returns a key object with cryptography's interface (``server.ca.pkcs11keys``).
Start-time problems (module, token, PIN, key) are ``ConfigError``s of one line.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from server.ca.pkcs11keys import (
    PKCS11ECPrivateKey,
    PKCS11PrivateKey,
    PKCS11RSAPrivateKey,
    ec_params,
    public_key_of,
)
from server.ca.pkcs11uri import PKCS11URI, parse_key_name
from server.errors import ConfigError, KeyUnavailable

__all__ = ["PKCS11PrivateKey", "PooledSession", "TokenPool", "find_key", "generate_key"]

log = logging.getLogger("certforge.ca")

UNAVAILABLE = "a CA key is unavailable right now; try again later"

# The errors that say the token (or our hold on it) is gone, not that one request was bad.
# NoSuchKey and the handle errors count: a key found at start that is no longer there
# means the token went away (SoftHSM2 answers so when its token directory is removed).
TOKEN_GONE: tuple[type[p11.PKCS11Error], ...] = (
    p11.DeviceError,
    p11.DeviceMemory,
    p11.DeviceRemoved,
    p11.FunctionFailed,
    p11.GeneralError,
    p11.KeyHandleInvalid,
    p11.NoSuchKey,
    p11.NoSuchToken,
    p11.ObjectHandleInvalid,
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.SlotIDInvalid,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
)
_PIN_REFUSED = (p11.PinIncorrect, p11.PinLocked, p11.PinExpired, p11.PinInvalid, p11.PinLenRange)

_EC_TYPES = {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}
_RSA_TYPES = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}


def describe(exc: BaseException) -> str:
    """python-pkcs11 raises most return codes with no text: name the class instead."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PooledSession:
    """One logged-in session and the key objects found through it (handles are kept for
    the session's life, so a signature costs one C_Sign, not a search as well)."""

    __slots__ = ("_keys", "session")

    def __init__(self, session: pkcs11.Session) -> None:
        self.session = session
        self._keys: dict[PKCS11URI, pkcs11.PrivateKey] = {}

    def private_key(self, uri: PKCS11URI) -> pkcs11.PrivateKey:
        key = self._keys.get(uri)
        if key is None:
            found = self.session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, label=uri.object, id=uri.id
            )
            assert isinstance(found, pkcs11.PrivateKey)  # noqa: S101 - asked for that class
            key = self._keys[uri] = found
        return key

    def close(self) -> None:
        # It is being thrown away because the token broke it: closing may fail as well.
        with contextlib.suppress(p11.PKCS11Error):
            self.session.close()


class TokenPool:
    """Sessions on one token, checked out with ``session()``; one call at a time."""

    def __init__(
        self,
        *,
        module: str,
        token_label: str,
        pin: str,
        wait_seconds: float = 10.0,
        retry_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self._wait_seconds = wait_seconds
        self._retry_seconds = retry_seconds
        self._clock = clock
        # Held for every call into the module (see the module docstring); re-entrant because
        # a block may check out a second session (rw_session, find_key inside a block).
        self._calls = threading.RLock()
        self._idle: list[PooledSession] = []
        self._in_use = 0
        self._broken: str | None = None  # why, while the token cannot be used
        self._next_attempt = 0.0
        self._pin_refused = False
        try:
            self._lib = pkcs11.lib(module)
        except p11.PKCS11Error as exc:
            raise ConfigError(f"cannot load the PKCS#11 module {module}: {exc}") from exc
        self._idle.append(self._open_at_start())

    def _open_at_start(self) -> PooledSession:
        where = f"PKCS#11 token {self.token_label!r} ({self.module})"
        try:
            return self._open(login=True)
        except p11.NoSuchToken:
            raise ConfigError(f"{where}: no token with that label") from None
        except _PIN_REFUSED as exc:
            raise ConfigError(f"{where}: the user PIN is refused ({describe(exc)})") from None
        except p11.PKCS11Error as exc:
            raise ConfigError(f"{where}: cannot open a session ({describe(exc)})") from exc

    def token(self) -> pkcs11.Token:
        with self._calls:
            return self._lib.get_token(token_label=self.token_label)

    def _open(self, *, login: bool, rw: bool = False) -> PooledSession:
        token = self.token()
        if not login:
            return PooledSession(token.open(rw=rw))
        try:
            return PooledSession(token.open(rw=rw, user_pin=self._pin))
        except p11.UserAlreadyLoggedIn:
            # Login is per application and token: a session of ours survived (its close
            # failed), and this one shares its login.
            return PooledSession(token.open(rw=rw))

    @contextmanager
    def session(self) -> Iterator[PooledSession]:
        """A session, and the module to this thread alone, until the block ends. A token
        error inside the block becomes ``KeyUnavailable``; other errors pass unchanged."""
        if not self._calls.acquire(timeout=self._wait_seconds):
            log.warning("PKCS#11 token %r: busy for %ss", self.token_label, self._wait_seconds)
            raise KeyUnavailable(UNAVAILABLE)
        try:
            pooled = self._checkout()
            try:
                yield pooled
            except TOKEN_GONE as exc:
                self._discard(pooled, exc)
                raise KeyUnavailable(UNAVAILABLE) from exc
            except BaseException:
                self._checkin(pooled)
                raise
            self._checkin(pooled)
        finally:
            self._calls.release()

    @contextmanager
    def rw_session(self) -> Iterator[pkcs11.Session]:
        """A read-write session outside the pool, for generating keys at start."""
        with self.session():  # holds the module, keeps the login, and takes the pool's errors
            rw = self._open(login=False, rw=True)
            try:
                yield rw.session
            finally:
                rw.close()

    def _checkout(self) -> PooledSession:
        if self._broken is not None:
            # Reconnecting restarts the module: not under a session still checked out (by
            # an enclosing block of this thread), and at most once a retry_seconds.
            if self._in_use or self._clock() < self._next_attempt:
                raise KeyUnavailable(UNAVAILABLE)
            pooled = self._recover()
        elif self._idle:
            pooled = self._idle.pop()
        else:
            try:
                pooled = self._open(login=False)
            except p11.PKCS11Error as exc:
                self._mark_broken(exc)
                raise KeyUnavailable(UNAVAILABLE) from exc
        self._in_use += 1
        return pooled

    def _checkin(self, pooled: PooledSession) -> None:
        self._in_use -= 1
        if self._broken is None:
            self._idle.append(pooled)
        else:
            pooled.close()  # opened before the token broke: the reconnection replaces it

    def _discard(self, pooled: PooledSession, exc: BaseException) -> None:
        self._in_use -= 1
        self._mark_broken(exc)
        pooled.close()

    def _mark_broken(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = describe(exc)
            self._next_attempt = self._clock()
            log.error(
                "PKCS#11 token %r is unavailable (%s); signing answers 503 until it is back",
                self.token_label,
                self._broken,
            )

    def _recover(self) -> PooledSession:
        stale, self._idle = self._idle, []
        for pooled in stale:
            pooled.close()
        try:
            fresh = self._reconnect()
        except KeyUnavailable:
            self._next_attempt = self._clock() + self._retry_seconds
            raise
        self._broken = None
        log.warning("PKCS#11 token %r is back; signing resumes", self.token_label)
        return fresh

    def _reconnect(self) -> PooledSession:
        if self._pin_refused:
            raise KeyUnavailable(UNAVAILABLE)
        try:
            try:
                return self._open(login=True)
            except _PIN_REFUSED:
                raise
            except p11.PKCS11Error:
                self._lib.reinitialize()
                return self._open(login=True)
        except _PIN_REFUSED as exc:
            self._pin_refused = True
            log.error(
                "PKCS#11 token %r refuses the PIN (%s); not trying again, restart with the "
                "right PIN",
                self.token_label,
                describe(exc),
            )
            raise KeyUnavailable(UNAVAILABLE) from exc
        except p11.PKCS11Error as exc:
            raise KeyUnavailable(UNAVAILABLE) from exc

    def close(self) -> None:
        with self._calls:
            idle, self._idle = self._idle, []
            self._broken = "closed"
            self._pin_refused = True  # a closed pool never reconnects
            for pooled in idle:
                pooled.close()


def generate_key(
    session: pkcs11.Session, *, label: str, key_type: str, decrypt: bool = False
) -> PKCS11URI:
    """Generate a key pair in the token (``session`` read-write) and return its name.

    The private key is sensitive and not extractable: it never leaves the token, wrapped
    or not. It may sign; with ``decrypt`` (the SCEP RA's RSA key) it may decrypt too.
    """
    if key_type not in _EC_TYPES and key_type not in _RSA_TYPES:
        raise ConfigError(f"{key_type!r} is not a key type certforge generates in a token")
    existing = list(
        session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label})
    )
    if existing:
        raise ConfigError(f"the PKCS#11 token already holds a private key labelled {label!r}")
    key_id = secrets.token_bytes(16)
    capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
    if decrypt:
        capabilities |= MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT
    private: dict[Attribute, Any] = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: decrypt,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }
    public: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.WRAP: False}
    common: dict[str, Any] = {
        "id": key_id,
        "label": label,
        "store": True,
        "capabilities": capabilities,
        "private_template": private,
        "public_template": public,
    }
    if key_type in _EC_TYPES:
        params = session.create_domain_parameters(
            KeyType.EC,
            {Attribute.EC_PARAMS: ec_params(_EC_TYPES[key_type])},
            local=True,
        )
        params.generate_keypair(**common)
    else:
        session.generate_keypair(KeyType.RSA, _RSA_TYPES[key_type], **common)
    log.info("generated %s key %r in the PKCS#11 token", key_type, label)
    return PKCS11URI(object=label, id=key_id)


def find_key(pool: TokenPool, name: str | PKCS11URI) -> PKCS11PrivateKey:
    """The private key a label or ``pkcs11:`` URI names, checked by one signature that its
    public key verifies (a public key object that is not its pair is refused at start)."""
    uri = parse_key_name(name) if isinstance(name, str) else name
    _check_token(pool, uri)
    where = f"PKCS#11 token {pool.token_label!r}"
    with pool.session() as pooled:
        try:
            found = pooled.private_key(uri)
        except p11.NoSuchKey:
            raise ConfigError(f"{where} has no private key {uri}") from None
        except p11.MultipleObjectsReturned:
            raise ConfigError(f"{where} has more than one private key {uri}") from None
        public = public_key_of(pooled.session, found, where=f"{where}, key {uri}")
    key: PKCS11PrivateKey
    if isinstance(public, ec.EllipticCurvePublicKey):
        key = PKCS11ECPrivateKey(pool, uri, public)
    else:
        key = PKCS11RSAPrivateKey(pool, uri, public)
    _self_test(key, where=f"{where}, key {uri}")
    return key


def _check_token(pool: TokenPool, uri: PKCS11URI) -> None:
    token = pool.token()
    actual = {
        "token": token.label,
        "manufacturer": token.manufacturer_id,
        "model": token.model,
        "serial": token.serial.decode("ascii", "replace").strip(),
    }
    for name, value in actual.items():
        wanted = getattr(uri, name)
        if wanted is not None and wanted != value:
            raise ConfigError(
                f"the key {uri} names {name} {wanted!r}, but the configured token's is {value!r}"
            )


def _self_test(key: PKCS11PrivateKey, *, where: str) -> None:
    data = secrets.token_bytes(32)
    try:
        if isinstance(key, PKCS11ECPrivateKey):
            signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
            key.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            key.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ConfigError(f"{where}: its public key does not verify its signatures") from None
    except Exception as exc:
        raise ConfigError(f"{where}: cannot sign with it ({describe(exc)})") from exc
