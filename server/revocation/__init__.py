"""Revocation status for relying parties: CRLs (RFC 5280 §5) and the OCSP responder's core
(RFC 6960). The engine records revocations; this package publishes them. It knows X.509
status formats but no transport: the HTTP routes and the OCSP front end call into it."""
