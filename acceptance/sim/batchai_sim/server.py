"""HTTP(S) front of the simulator: ARM routes, the Entra token endpoint, cloud metadata, the
control API (``/_sim/...``) and the per-node IMDS handler."""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from . import arm
from .arm import ArmError, Fault, Sim
from .pki import decode_jwt, load_certificate_key, verify_jwt

MANAGEMENT_AUDIENCES = ("https://management.azure.com/", "https://management.azure.com", "https://management.core.windows.net/")
SUB = r"/subscriptions/(?P<sub>[^/]+)"
RG = SUB + r"/resourceGroups/(?P<rg>[^/]+)"
COMPUTE = RG + r"/providers/Microsoft\.Compute"
SS = COMPUTE + r"/virtualMachineScaleSets/(?P<name>[^/]+)"


class Route:
    def __init__(self, method: str, pattern: str, api: str | None, handler: Callable, auth: bool = True):
        self.method = method
        self.regex = re.compile(pattern + r"/?", re.IGNORECASE)
        self.api = api
        self.handler = handler
        self.auth = auth


class RequestLog:
    def __init__(self, limit: int = 100_000):
        self.entries: deque = deque(maxlen=limit)
        self.seq = 0
        self.lock = threading.Lock()

    def add(self, entry: dict) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.entries.append(entry)

    def since(self, seq: int, kind: str | None) -> list[dict]:
        with self.lock:
            return [e for e in self.entries if e["seq"] > seq and (kind is None or e["kind"] == kind)]

    def reset(self) -> None:
        with self.lock:
            self.entries.clear()


class App:
    def __init__(self, sim: Sim):
        self.sim = sim
        self.log = RequestLog()
        self.cert_key = load_certificate_key(sim.config.client_certificate) if sim.config.client_certificate else None
        self.rate: dict[str, deque] = {}
        self.rate_lock = threading.Lock()
        self.started = time.time()
        s = sim
        self.routes = [
            Route("PUT", SS, arm.COMPUTE, lambda r: s.put_vmss(r.m["rg"], r.m["name"], r.body, r.host, r.path)),
            Route("GET", SS, arm.COMPUTE, lambda r: (200, {}, s.get_vmss(r.m["rg"], r.m["name"]))),
            Route("PATCH", SS, arm.COMPUTE, lambda r: s.patch_vmss(r.m["rg"], r.m["name"], r.body, r.host, r.path)),
            Route("DELETE", SS, arm.COMPUTE, lambda r: s.delete_vmss(r.m["rg"], r.m["name"], r.host)),
            Route("POST", SS + r"/delete", arm.COMPUTE, lambda r: s.delete_instances(r.m["rg"], r.m["name"], r.body, r.host, r.path)),
            Route("GET", SS + r"/virtualMachines", arm.COMPUTE, self._list_instances),
            Route("GET", SS + r"/virtualMachines/(?P<iid>[^/]+)", arm.COMPUTE,
                  lambda r: (200, {}, s.get_instance(r.m["rg"], r.m["name"], r.m["iid"], "instanceView" in r.q.get("$expand", "")))),
            Route("POST", SS + r"/virtualMachines/(?P<iid>[^/]+)/simulateEviction", arm.COMPUTE, self._simulate_eviction),
            Route("PUT", COMPUTE + r"/virtualMachines/(?P<name>[^/]+)", arm.COMPUTE, lambda r: s.put_vm(r.m["rg"], r.m["name"], r.body, r.host, r.path)),
            Route("GET", COMPUTE + r"/virtualMachines/(?P<name>[^/]+)", arm.COMPUTE,
                  lambda r: (200, {}, s.get_vm(r.m["rg"], r.m["name"], "instanceView" in r.q.get("$expand", "")))),
            Route("DELETE", COMPUTE + r"/virtualMachines/(?P<name>[^/]+)", arm.COMPUTE, lambda r: s.delete_vm(r.m["rg"], r.m["name"], r.host)),
            Route("GET", SUB + r"/providers/Microsoft\.Compute/skus", arm.SKUS, self._skus),
            Route("GET", SUB + r"/providers/Microsoft\.Compute/locations/(?P<loc>[^/]+)/usages", arm.COMPUTE, self._usages),
            Route("GET", SUB + r"/providers/(?P<provider>Microsoft\.Compute|Microsoft\.Storage)/locations/(?P<loc>[^/]+)/(?:operations|asyncoperations)/(?P<op>[^/]+)", None, self._operation),
            Route("GET", RG + r"/providers/Microsoft\.Network/virtualNetworks/(?P<vnet>[^/]+)/subnets/(?P<subnet>[^/]+)", arm.NETWORK,
                  lambda r: (200, {}, s.get_subnet(r.m["rg"], r.m["vnet"], r.m["subnet"]))),
            Route("GET", RG + r"/providers/Microsoft\.Network/virtualNetworks/(?P<vnet>[^/]+)", arm.NETWORK,
                  lambda r: (200, {}, s.get_vnet(r.m["rg"], r.m["vnet"]))),
            Route("GET", RG + r"/providers/Microsoft\.Network/networkInterfaces/(?P<name>[^/]+)", arm.NETWORK,
                  lambda r: (200, {}, s.get_nic(r.m["rg"], r.m["name"]))),
            Route("PUT", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)", arm.STORAGE,
                  lambda r: s.put_storage(r.m["rg"], r.m["name"], r.body, r.host)),
            Route("GET", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)", arm.STORAGE,
                  lambda r: (200, {}, s.get_storage(r.m["rg"], r.m["name"]))),
            Route("POST", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)/listKeys", arm.STORAGE,
                  lambda r: (200, {}, s.list_keys(r.m["rg"], r.m["name"]))),
            Route("PUT", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)/blobServices/default/containers/(?P<c>[^/]+)", arm.STORAGE,
                  lambda r: s.put_container(r.m["rg"], r.m["name"], r.m["c"], r.body)),
            Route("GET", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)/blobServices/default/containers/(?P<c>[^/]+)", arm.STORAGE,
                  lambda r: (200, {}, s.get_container(r.m["rg"], r.m["name"], r.m["c"]))),
            Route("PUT", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)/fileServices/default/shares/(?P<s>[^/]+)", arm.STORAGE,
                  lambda r: s.put_share(r.m["rg"], r.m["name"], r.m["s"], r.body)),
            Route("GET", RG + r"/providers/Microsoft\.Storage/storageAccounts/(?P<name>[^/]+)/fileServices/default/shares/(?P<s>[^/]+)", arm.STORAGE,
                  lambda r: (200, {}, s.get_share(r.m["rg"], r.m["name"], r.m["s"]))),
            Route("PUT", RG + r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)", arm.MSI,
                  lambda r: s.put_identity(r.m["rg"], r.m["name"], r.body)),
            Route("GET", RG + r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)", arm.MSI,
                  lambda r: (200, {}, s.get_identity(r.m["rg"], r.m["name"]))),
            Route("DELETE", RG + r"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>[^/]+)", arm.MSI,
                  lambda r: (s.delete_identity(r.m["rg"], r.m["name"]), {}, None)),
            Route("PUT", r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)", arm.AUTHZ,
                  lambda r: s.put_role_assignment(r.m["scope"], r.m["name"], r.body)),
            Route("GET", r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)", arm.AUTHZ,
                  lambda r: (200, {}, s.get_role_assignment(r.m["scope"], r.m["name"]))),
            Route("DELETE", r"(?P<scope>/subscriptions/.+?)/providers/Microsoft\.Authorization/roleAssignments/(?P<name>[^/]+)", arm.AUTHZ,
                  lambda r: (lambda out: (out[0], {}, out[1]))(s.delete_role_assignment(r.m["scope"], r.m["name"]))),
        ]

    # --- ARM handlers needing the request ------------------------------------------------

    def _list_instances(self, r: "Req") -> tuple[int, dict, Any]:
        expand = r.q.get("$expand", "")
        base = f"https://{r.host}{r.path}?api-version={arm.COMPUTE}"
        if expand:
            base += "&$expand=" + urllib.parse.quote(expand)
        return 200, {}, self.sim.list_instances(r.m["rg"], r.m["name"], "instanceView" in expand, r.q.get("$skiptoken"), base)

    def _simulate_eviction(self, r: "Req") -> tuple[int, dict, Any]:
        self.sim.check_rg(r.m["sub"], r.m["rg"])
        self.sim.simulate_eviction(r.m["rg"], r.m["name"], r.m["iid"])
        return 204, {}, None

    def _skus(self, r: "Req") -> tuple[int, dict, Any]:
        filt = r.q.get("$filter", "")
        m = re.fullmatch(r"\s*location\s+eq\s+'([^']+)'\s*", filt) if filt else None
        if filt and m is None:
            raise ArmError(400, "InvalidFilter", f"The filter '{filt}' is not supported: use location eq '<location>'.")
        if m and m.group(1).replace(" ", "").lower() != self.sim.config.location:
            return 200, {}, {"value": []}
        return 200, {}, self.sim.skus()

    def _usages(self, r: "Req") -> tuple[int, dict, Any]:
        if r.m["loc"].replace(" ", "").lower() != self.sim.config.location:
            return 200, {}, {"value": []}
        return 200, {}, self.sim.usages()

    def _operation(self, r: "Req") -> tuple[int, dict, Any]:
        return self.sim.operation_status(r.m["op"], r.q.get("monitor") == "true", r.host)

    # --- auth ---------------------------------------------------------------------------

    def check_token(self, header: str | None) -> dict:
        if not header:
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
        if not header.startswith("Bearer "):
            raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
        claims = self.sim.pki.verify(header[7:].strip())
        if claims is None:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if claims.get("aud") not in MANAGEMENT_AUDIENCES:
            raise ArmError(401, "InvalidAuthenticationToken", f"The access token has been obtained for wrong audience or resource '{claims.get('aud')}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.azure.com/'.")
        if claims.get("tid") != self.sim.config.tenant_id:
            raise ArmError(401, "InvalidAuthenticationTokenTenant", "The access token is from the wrong issuer.")
        return claims

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict]:
        def fail(status: int, error: str, description: str, codes: list[int]) -> tuple[int, dict]:
            return status, {"error": error, "error_description": description, "error_codes": codes, "timestamp": arm.now_iso(), "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}

        cfg = self.sim.config
        if tenant not in (cfg.tenant_id,):
            return fail(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.", [90002])
        if form.get("grant_type") != "client_credentials":
            return fail(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.", [70003])
        client_id = form.get("client_id", "")
        if client_id != cfg.client_id:
            return fail(400, "unauthorized_client", f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory.", [700016])
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return fail(400, "invalid_scope", f"AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.", [1002012])
        if "client_secret" in form:
            if form["client_secret"] != cfg.client_secret:
                return fail(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", [7000215])
        elif "client_assertion" in form:
            if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return fail(400, "invalid_request", "AADSTS50027: client_assertion_type is not jwt-bearer.", [50027])
            problem = self._check_assertion(form["client_assertion"], tenant)
            if problem:
                return fail(401, "invalid_client", problem, [700027])
        else:
            return fail(401, "invalid_client", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", [7000218])
        resource = scope[: -len(".default")]
        t = int(time.time())
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{cfg.tenant_id}/",
            "iat": t,
            "nbf": t - 5,
            "exp": t + 3599,
            "appid": cfg.client_id,
            "oid": cfg.client_id,
            "sub": cfg.client_id,
            "tid": cfg.tenant_id,
            "idtyp": "app",
        }
        return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": self.sim.pki.sign(claims)}

    def _check_assertion(self, assertion: str, tenant: str) -> str | None:
        decoded = decode_jwt(assertion)
        if decoded is None:
            return "AADSTS50027: JWT token is invalid or malformed."
        _, claims = decoded
        if claims.get("exp", 0) < time.time():
            return "AADSTS700024: Client assertion is not within its valid time range."
        cfg = self.sim.config
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if "api://AzureADTokenExchange" in auds:
            # Workload identity federation: a token from a trusted issuer (here: the simulator's
            # own, from /_sim/oidc-token) for the configured subject.
            if self.sim.pki.verify(assertion) is None:
                return "AADSTS700211: No matching federated identity record found for presented assertion issuer."
            if claims.get("sub") != cfg.oidc_subject:
                return f"AADSTS70021: No matching federated identity record found for presented assertion. Assertion Subject: '{claims.get('sub')}'."
            return None
        # A certificate credential: iss == sub == client ID, signed by the registered certificate.
        if claims.get("iss") != cfg.client_id or claims.get("sub") != cfg.client_id:
            return "AADSTS700023: Client assertion audience claim does not match Realm issuer."
        if self.cert_key is None or verify_jwt(assertion, self.cert_key) is None:
            return "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application."
        return None

    def metadata(self, host: str) -> dict:
        base = f"https://{host}/"
        return {
            "portal": base,
            "authentication": {
                "loginEndpoint": base,
                "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "media": base,
            "graphAudience": "https://graph.windows.net/",
            "graph": base,
            "name": "AzureSimulator",
            "suffixes": {
                "azureDataLakeStoreFileSystem": "azuredatalakestore.net",
                "acrLoginServer": "azurecr.io",
                "sqlServerHostname": "database.windows.net",
                "azureDataLakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
                "keyVaultDns": "vault.azure.net",
                "storage": "core.windows.net",
                "azureFrontDoorEndpointSuffix": "azurefd.net",
                "storageSyncEndpointSuffix": "afs.azure.net",
                "mhsmDns": "managedhsm.azure.net",
                "mysqlServerEndpoint": "mysql.database.azure.com",
                "postgresqlServerEndpoint": "postgres.database.azure.com",
                "sqlServerEndpoint": "database.windows.net",
                "synapseAnalytics": "dev.azuresynapse.net",
            },
            "batch": "https://batch.core.windows.net/",
            "resourceManager": base,
            "vmImageAliasDoc": "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/quickstart-templates/aliases.json",
            "activeDirectoryDataLake": "https://datalake.azure.net/",
            "sqlManagement": "https://management.core.windows.net:8443/",
            "microsoftGraphResourceId": "https://graph.microsoft.com/",
            "appInsightsResourceId": "https://api.applicationinsights.io",
            "appInsightsTelemetryChannelResourceId": "https://dc.applicationinsights.azure.com/v2/track",
            "attestationResourceId": "https://attest.azure.net",
            "synapseAnalyticsResourceId": "https://dev.azuresynapse.net",
            "logAnalyticsResourceId": "https://api.loganalytics.io",
            "ossrDbmsResourceId": "https://ossrdbms-aad.database.windows.net",
        }

    def rate_headers(self, method: str, path: str) -> tuple[dict[str, str], int | None]:
        """x-ms-ratelimit-* headers from the requests of the last 3 and 30 minutes; with
        enforcement on, the seconds to wait when a bucket is empty."""
        write = method in ("PUT", "PATCH", "POST", "DELETE")
        kind = "VMScaleSet" if "virtualmachinescalesets" in path.lower() else "VM"
        bucket = f"Microsoft.Compute/{'Put' if write else 'Get'}{kind}"
        limits = (240, 1200) if write else (360, 2000)
        t = time.time()
        with self.rate_lock:
            times = self.rate.setdefault(bucket, deque())
            while times and times[0] < t - 1800:
                times.popleft()
            short = sum(1 for x in times if x >= t - 180)
            wait = None
            if self.sim.config.enforce_rate_limits and short >= limits[0]:
                wait = max(1, int(next(x for x in times if x >= t - 180) + 180 - t) + 1)
            else:
                times.append(t)
                short += 1
            remaining = (max(0, limits[0] - short), max(0, limits[1] - len(times)))
        headers = {
            "x-ms-ratelimit-remaining-subscription-" + ("writes" if write else "reads"): str(max(0, (1199 if write else 11999) - short)),
        }
        if "microsoft.compute" in path.lower():
            headers["x-ms-ratelimit-remaining-resource"] = f"{bucket}3Min;{remaining[0]},{bucket}30Min;{remaining[1]}"
        return headers, wait


class Req:
    def __init__(self, method: str, path: str, q: dict[str, str], body: Any, host: str, m: dict[str, str]):
        self.method, self.path, self.q, self.body, self.host, self.m = method, path, q, body, host, m


class ArmHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batchai-sim"
    app: App

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self.handle_any()

    def do_PUT(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def do_PATCH(self) -> None:
        self.handle_any()

    def do_DELETE(self) -> None:
        self.handle_any()

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, headers: dict[str, str], body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", headers.get("Content-Type", "application/json; charset=utf-8"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def handle_any(self) -> None:
        start = time.time()
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        correlation = self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        request_id = str(uuid.uuid4())
        headers = {"x-ms-request-id": request_id, "x-ms-correlation-request-id": correlation}
        raw = self.read_body()
        self.rate: dict[str, str] = {}
        app = self.app
        kind = "arm"
        status = 500
        fault_id = None
        self.caller: str | None = None
        try:
            if path.startswith("/_sim/"):
                kind = "control"
                status, extra, body = self.control(path, query, raw)
            elif path == "/metadata/endpoints":
                kind = "metadata"
                status, extra, body = 200, {}, app.metadata(host)
            elif m := re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path):
                kind = "token"
                form = dict(urllib.parse.parse_qsl(raw.decode(errors="replace")))
                status, body = app.token(m.group(1), form) if self.command == "POST" else (405, {"error": "invalid_request"})
                extra = {"Cache-Control": "no-store"}
            elif m := re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path):
                kind = "token"
                base = f"https://{host}/{m.group(1)}"
                status, extra, body = 200, {}, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"https://sts.windows.net/{m.group(1)}/", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize", "tenant_region_scope": "EU"}
            else:
                status, extra, body, fault_id = self.arm(path, query, raw, host)
            headers.update(extra)
        except ArmError as error:
            status, body = error.status, error.body()
            headers.update(self.rate)
            if status == 401:
                headers["WWW-Authenticate"] = f'Bearer authorization_uri="https://{host}/{app.sim.config.tenant_id}", error="invalid_token"'
        except Exception as error:  # noqa: BLE001 - an answer, with the trace, for every bug
            status = 500
            body = {"error": {"code": "SimulatorError", "message": f"{type(error).__name__}: {error}", "details": [{"code": "Trace", "message": traceback.format_exc()[-2000:]}]}}
        self.send(status, headers, body)
        if kind != "control":
            entry = {"time": start, "method": self.command, "path": path, "query": url.query, "status": status, "kind": kind, "durationMs": round((time.time() - start) * 1000, 1), "correlationId": correlation, "caller": self.caller}
            if fault_id:
                entry["fault"] = fault_id
            app.log.add(entry)

    def arm(self, path: str, query: dict[str, str], raw: bytes, host: str) -> tuple[int, dict, Any, str | None]:
        app = self.app
        route, match = None, None
        allowed = []
        for candidate in app.routes:
            m = candidate.regex.fullmatch(path)
            if m:
                allowed.append(candidate.method)
                if candidate.method == self.command:
                    route, match = candidate, m
                    break
        if route is None or match is None:
            if allowed:
                raise ArmError(405, "MethodNotAllowed", f"The requested resource does not support http method '{self.command}'.")
            raise ArmError(404, "NotFound", f"No HTTP resource was found that matches the request URI 'https://{host}{path}'.")
        # Who asked (the provider's service principal or a node's identity), for the request log.
        self.caller = app.check_token(self.headers.get("Authorization")).get("appid")
        if route.api is not None:
            version = query.get("api-version")
            if not version:
                raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
            if version != route.api:
                raise ArmError(400, "NoRegisteredProviderFound", f"No registered resource provider found for location '{app.sim.config.location}' and API version '{version}' for type '{path}'. The supported api-versions are '{route.api}'.")
        rate, wait = app.rate_headers(self.command, path)
        self.rate = rate
        fault = app.sim.take_fault("throttle", self.command, path)
        if fault is not None:
            return 429, {**rate, "Retry-After": str(fault.retry_after)}, {"error": {"code": fault.code or "TooManyRequests", "message": fault.message or "The request is being throttled as the limit has been reached for operation type - Write_ObservationWindow_00:03:00. For more information, see - https://aka.ms/vmssthrottling"}}, fault.id
        if wait:
            return 429, {**rate, "Retry-After": str(wait)}, {"error": {"code": "TooManyRequests", "message": "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:03:00."}}, None
        fault = app.sim.take_fault("error", self.command, path)
        if fault is not None:
            return fault.status, rate, {"error": {"code": fault.code or "InternalServerError", "message": fault.message or "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''."}}, fault.id
        body = None
        if self.command in ("PUT", "PATCH", "POST") and raw:
            try:
                body = json.loads(raw)
            except ValueError as error:
                raise ArmError(400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: '{error}'.") from None
        if "sub" in match.groupdict() and match["sub"].lower() != app.sim.sub().lower():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{match['sub']}' could not be found.")
        if "rg" in match.groupdict() and self.command not in ("PUT", "DELETE"):
            app.sim.check_rg(match["sub"], match["rg"])
        status, extra, out = route.handler(Req(self.command, path, query, body, host, match.groupdict()))
        return status, {**rate, **extra}, out, None

    # --- control API ------------------------------------------------------------------

    def control(self, path: str, query: dict[str, str], raw: bytes) -> tuple[int, dict, Any]:
        sim = self.app.sim
        body = json.loads(raw) if raw else {}
        method = self.command
        if path == "/_sim/health":
            return 200, {}, {"status": "ok", "uptime": round(time.time() - self.app.started, 1)}
        if path == "/_sim/requests":
            if method == "DELETE":
                self.app.log.reset()
                return 204, {}, None
            entries = self.app.log.since(int(query.get("since", 0)), query.get("kind"))
            return 200, {}, {"requests": entries, "last": self.app.log.seq}
        if path == "/_sim/faults":
            if method == "POST":
                known = set(Fault.__dataclass_fields__) - {"id"}
                spec = {re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), k): v for k, v in body.items()}
                if set(spec) - known or spec.get("kind") not in ("throttle", "error", "fail", "slow"):
                    raise ArmError(400, "BadFault", f"a fault is {{kind: throttle|error|fail|slow, {', '.join(sorted(known - {'kind'}))}}}")
                fault = Fault(**spec)
                with sim.lock:
                    sim.faults.append(fault)
                return 201, {}, fault.describe()
            if method == "DELETE":
                with sim.lock:
                    sim.faults.clear()
                return 204, {}, None
            with sim.lock:
                return 200, {}, {"faults": [f.describe() for f in sim.faults]}
        if path.startswith("/_sim/faults/") and method == "DELETE":
            fault_id = path.rsplit("/", 1)[1]
            with sim.lock:
                kept = [f for f in sim.faults if str(f.id) != fault_id]
                found = len(kept) != len(sim.faults)
                sim.faults[:] = kept
            return (204, {}, None) if found else (404, {}, {"error": f"no fault {fault_id}"})
        if path == "/_sim/config":
            names = {"provisionDelay": "provision_delay", "deleteDelay": "delete_delay", "evictionTimeout": "eviction_timeout", "pageSize": "page_size", "retryAfter": "retry_after", "restrictedSkus": "restricted_skus", "enforceRateLimits": "enforce_rate_limits"}
            with sim.lock:
                if method == "POST":
                    for key, value in body.items():
                        if key == "quotas":
                            sim.config.quotas.update({k: int(v) for k, v in value.items()})
                        elif key in names:
                            setattr(sim.config, names[key], value)
                        else:
                            raise ArmError(400, "BadConfig", f"unknown setting {key}; settings: quotas, {', '.join(names)}")
                out = {k: getattr(sim.config, v) for k, v in names.items()}
                out["quotas"] = sim.config.quotas
                return 200, {}, out
        if path == "/_sim/nodes":
            return 200, {}, {"nodes": sim.nodes_view()}
        if path == "/_sim/fileshares":
            if method == "POST":
                if not isinstance(body, dict) or set(body) - {"account", "share"}:
                    raise ArmError(400, "BadFileShare", 'a file share is {"account": ACCOUNT, "share": SHARE}')
                status, share = sim.create_fileshare(body.get("account"), body.get("share"))
                return status, {}, share
            if method == "GET":
                return 200, {}, {"fileshares": sim.fileshares()}
        if path == "/_sim/oidc-token" and method == "POST":
            t = int(time.time())
            claims = {"iss": f"https://{self.headers.get('Host')}/oidc", "aud": "api://AzureADTokenExchange", "sub": body.get("subject", sim.config.oidc_subject), "iat": t, "nbf": t, "exp": t + 600}
            return 200, {}, {"token": sim.pki.sign(claims)}
        if m := re.fullmatch(r"/_sim/resourceGroups/([^/]+)/vmss/([^/]+)/instances/([^/]+)/(delete|evict)", path):
            rg, name, iid, action = m.groups()
            if action == "delete":
                sim.delete_behind_back(rg, name, iid, bool(body.get("keepCapacity")))
            else:
                sim.simulate_eviction(rg, name, iid, check_spot=False, notice=body.get("notice"))
            return 204, {}, None
        if m := re.fullmatch(r"/_sim/resourceGroups/([^/]+)/vms/([^/]+)/delete", path):
            sim.delete_vm_behind_back(m.group(1), m.group(2))
            return 204, {}, None
        raise ArmError(404, "NotFound", f"no control endpoint {method} {path}; see acceptance/sim/README.md")


class ImdsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "batchai-sim-imds"
    app: App

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def handle_any(self) -> None:
        start = time.time()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        node = self.server.node  # type: ignore[attr-defined]
        sim = self.app.sim
        owner = sim.node_owner(node)
        status, body = self.answer(url.path, query, raw, owner, node)
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.app.log.add({"time": start, "method": self.command, "path": url.path, "query": url.query, "status": status, "kind": "imds", "vm": node.name, "durationMs": round((time.time() - start) * 1000, 1)})

    def answer(self, path: str, query: dict, raw: bytes, owner: Any, node: Any) -> tuple[int, Any]:
        sim = self.app.sim
        if self.headers.get("Metadata", "").lower() != "true" or self.headers.get("X-Forwarded-For"):
            return 400, {"error": "Bad request. Required metadata header not specified"}
        if node.namespace is not None and self.client_address[0] != node.address:
            return 403, {"error": f"request from {self.client_address[0]}, not this VM's address"}
        if owner is None or node.killed:
            return 404, {"error": "this VM no longer exists"}
        if "api-version" not in query:
            return 400, {"error": "Bad request. api-version was not specified in the request", "newest-versions": ["2023-07-01", "2021-02-01", "2020-07-01"]}
        if path == "/metadata/identity/oauth2/token" and self.command == "GET":
            return sim.identity_token(owner, query)
        if path == "/metadata/instance" and self.command == "GET":
            return 200, sim.instance_metadata(owner)
        if path == "/metadata/scheduledevents":
            if self.command == "GET":
                return 200, sim.scheduled_events(owner)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            return sim.ack_events(owner, body)
        return 404, {"error": "Not found"}


def make_servers(app: App, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundArmHandler", (ArmHandler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(app.sim.pki.cert_path), str(app.sim.pki.key_path))
    # The handshake happens in the request's thread, not in accept.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    app.sim.imds_handler = type("BoundImdsHandler", (ImdsHandler,), {"app": app})
    return server
