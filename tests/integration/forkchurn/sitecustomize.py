"""A test aid, put on PYTHONPATH by tests/integration/test_worker_start.py: in the
``certforge serve`` parent only, threads that start and stop threads using OpenSSL without
pause. Each thread takes OpenSSL's lock on its registry of thread-event handlers when it
first signs and again in its exit destructor, after Python has let go of it; so at any
instant the lock is likely held, and a process forked then inherits it held by a thread it
does not have. That is the hang of issue 19, made frequent instead of 1 start in 100."""

import os
import sys
import threading
import time


def _churn() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())

    def sign() -> None:
        key.sign(b"fork", ec.ECDSA(hashes.SHA256()))

    while True:
        thread = threading.Thread(target=sign)
        thread.start()
        thread.join()


def _start() -> None:
    time.sleep(0.2)  # sys.argv is complete only once the interpreter runs the main module
    if sys.argv[1:2] == ["serve"]:
        for _ in range(int(os.environ.get("FORKCHURN_THREADS", "8"))):
            threading.Thread(target=_churn, daemon=True).start()


threading.Thread(target=_start, daemon=True).start()
