"""Every typed lookup key shared between the process, the engine and the front ends.

Front ends are mounted as sub-applications; they read these through ``request.config_dict``,
which falls back from the sub-app to the top-level app where the values are set.
"""

from __future__ import annotations

from aiohttp import web

from server.ca.issuers import CAHierarchy
from server.challenges import Challenges
from server.config import Config
from server.engine import Engine
from server.revocation.ocsp import OCSPResponder
from server.revocation.publisher import CRLPublisher
from server.store.base import Store
from server.tokens import TokenService
from server.web.inflight import InFlight
from server.web.metrics import Metrics
from server.web.requestlog import RequestLog

CONFIG = web.AppKey("config", Config)
ENGINE = web.AppKey("engine", Engine)
STORE = web.AppKey("store", Store)
CAS = web.AppKey("cas", CAHierarchy)
TOKENS = web.AppKey("tokens", TokenService)
CRLS = web.AppKey("crls", CRLPublisher)
OCSP = web.AppKey("ocsp", OCSPResponder)
CHALLENGES = web.AppKey("challenges", Challenges)  # one-time passwords for SCEP and EST
METRICS = web.AppKey("metrics", Metrics)
IN_FLIGHT = web.AppKey("in_flight", InFlight)  # the process's requests, shared by both apps
REQUEST_LOG = web.RequestKey("request_log", RequestLog)
FRONTEND = web.AppKey("frontend", str)  # set on each front end's sub-app: "rest", "acme"...
