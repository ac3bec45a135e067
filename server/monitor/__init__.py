"""Monitoring: ``expiring`` events before certificates expire, and the store's gauges.

- ``expiry.py``: which threshold is due for a certificate, and the scan that records one
  ``expiring`` event per certificate and threshold (a walk of the store's notAfter index, and
  the certificates the server itself uses: CA, TLS, OCSP signer, SCEP RA).
- ``watched.py``: the certificates the server uses itself, as sources read at each scan; a
  front end adds its own through ``server.frontend.Mount.watched``.
- ``gauges.py``: the Prometheus gauges recounted from the store at each scan.
- ``service.py``: the job that runs both every ``[monitor] scan_interval_seconds``.
"""
