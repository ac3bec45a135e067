"""What a policy plug-in needs, in one import: ``from policies.base import ...``.

A policy module is an object with a ``name`` and ``async decide(req, draft) -> Decision``:

- ``Issue(draft)``: go on, with this draft (the same, or shaped with ``dataclasses.replace``);
- ``Hold(draft, reason)``: keep the request pending for an administrator; the draft is
  stored, and an approval signs exactly that;
- ``Deny(reason)``: refuse; the reason is shown to the requester.

Modules run in ``[policy] modules`` order, each receiving the draft the previous one returned;
the first Hold or Deny ends the chain. A module never mutates anything: drafts are frozen.

Plug-ins register a factory in the entry-point group ``certforge.policies``::

    [project.entry-points."certforge.policies"]
    mine = "my_package.policy:create"

and the factory has this signature (``PolicyFactory``)::

    def create(config: Config, options: Mapping[str, Any]) -> PolicyModule: ...

``config`` is the whole validated configuration (the profiles, for instance), ``options`` the
module's own table ``[policy.options.<name>]``. A factory should raise ``ConfigError`` naming
any option it does not know; certforge then refuses to start, naming the plug-in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from server.config import Config
from server.errors import ConfigError
from server.model import (
    CertificateDraft,
    Decision,
    Deny,
    EnrollmentRequest,
    Hold,
    Issue,
    PolicyModule,
)

PolicyFactory: TypeAlias = Callable[[Config, Mapping[str, Any]], PolicyModule]

__all__ = [
    "CertificateDraft",
    "Config",
    "ConfigError",
    "Decision",
    "Deny",
    "EnrollmentRequest",
    "Hold",
    "Issue",
    "PolicyFactory",
    "PolicyModule",
]
