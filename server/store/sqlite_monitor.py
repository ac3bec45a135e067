"""SQLite reads of the monitor (``server/monitor``): literal SQL, every value bound.

Each names the index it is written for (``sqlite_schema.py``), so that a store of millions of
certificates is walked or counted from an index, never by reading the certificates' rows.
"""

from __future__ import annotations

from server.store.sqlite_schema import CERTIFICATE_COLUMNS

# Valid certificates by (notAfter, serial) after a keyset position, up to a notAfter.
EXPIRING = (
    f"SELECT {CERTIFICATE_COLUMNS} FROM certificates INDEXED BY certificates_valid_expiry "
    "WHERE status = 'valid' AND (not_after, serial) > (?, ?) AND not_after <= ? "
    "ORDER BY not_after, serial LIMIT ?"
)
# The same, of the certificates valid for longer than a number of seconds: the rows read from
# the index but not longer are filtered here instead of decoded and dropped by the monitor.
EXPIRING_LONGER = (
    f"SELECT {CERTIFICATE_COLUMNS} FROM certificates INDEXED BY certificates_valid_expiry "
    "WHERE status = 'valid' AND (not_after, serial) > (?, ?) AND not_after <= ? "
    "AND (julianday(not_after) - julianday(not_before)) * 86400.0 > ? "
    "ORDER BY not_after, serial LIMIT ?"
)
# The ids among a JSON array that are recorded events (a point lookup each, in the id index).
EXISTING_EVENTS = "SELECT id FROM events WHERE id IN (SELECT value FROM json_each(?))"
BY_PROFILE = (
    "SELECT profile, CASE WHEN not_after <= ? THEN 'expired' ELSE status END AS state, "
    "COUNT(*) AS n FROM certificates INDEXED BY certificates_profile_status "
    "GROUP BY profile, state"
)
EXPIRING_COUNT = (
    "SELECT COUNT(*) AS n FROM certificates INDEXED BY certificates_status_expiry "
    "WHERE status = 'valid' AND not_after > ? AND not_after <= ?"
)
PENDING = "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM requests WHERE status = 'pending'"
