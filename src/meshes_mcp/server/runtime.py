"""What every tool shares: settings, the API client, the integration catalogue, the redactor."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from meshes_mcp.config import CREDENTIALS_HELP, HttpSettings, Settings
from meshes_mcp.server.registry import EnabledTools, every_tool_enabled
from meshes_mcp.server.render import Redactor, prune, redact_logs, tool_result
from meshes_mcp.server.tenants import CREDENTIAL_HEADERS_HELP, Caller, TenantPool, current_caller, current_tenant

if TYPE_CHECKING:
    from mcp_types import CallToolResult

    from meshes_mcp.api.catalog import Catalog
    from meshes_mcp.api.client import MeshesClient, SharedTransport
    from meshes_mcp.api.problems import Problem

log = logging.getLogger("meshes_mcp")


class Runtime:
    def __init__(
        self,
        settings: Settings,
        client: MeshesClient | None = None,
        enabled: EnabledTools | None = None,
        *,
        http: HttpSettings | None = None,
    ) -> None:
        self.settings = settings
        # The tools this server registered: hints in results name no other (see `result`).
        self.enabled = enabled if enabled is not None else every_tool_enabled()
        self._own_redactor = Redactor()
        redact_logs(self._own_redactor)
        self._catalog: Catalog | None = None
        self._catalog_live = False
        self._secret_keys: dict[tuple[int, str | None], frozenset[str]] = {}
        self._client = self._learning(client, self._own_redactor) if client is not None else None
        # Per-request credentials: each caller's client and redactor, leased by the HTTP layer. The callers'
        # clients share one connection pool, so an idle caller costs a few KiB, not a pool and TLS context.
        self._shared_transport: SharedTransport | None = None
        self.tenants = None
        if http is not None and http.per_request_credentials:
            limits = {"max_calls": http.caller_calls, "max_waits": http.caller_waits}
            self.tenants = TenantPool(self._tenant_client, http.idle_tenants, **limits)
        for secret in (settings.secret_key, settings.access_key):
            if secret is not None:
                self._own_redactor.add(secret.get_secret_value())

    @property
    def redactor(self) -> Redactor:
        """The caller's redactor when each request brings its own keys, else the server's."""
        tenant = current_tenant.get()
        return tenant.redactor if tenant is not None else self._own_redactor

    # --- API access -------------------------------------------------------------------------

    def client(self, *, publishable_ok: bool = False) -> MeshesClient:
        """The API client, or a ToolError naming the missing credentials."""
        if self.tenants is not None:
            tenant = current_tenant.get()
            if tenant is None:  # the HTTP layer refuses such requests; kept for any other way in
                raise ToolError(f"This server takes Meshes keys per request: {CREDENTIAL_HEADERS_HELP}.")
            return tenant.client
        can_call = self.settings.machine_key() is not None or (publishable_ok and self.settings.publishable_key)
        if not can_call:
            missing = ", ".join(self.settings.missing_credentials())
            raise ToolError(f"Meshes credentials are not configured (missing {missing}). {CREDENTIALS_HELP}")
        if self._client is None:
            from meshes_mcp.api.client import MeshesClient  # deferred: keeps start-up lean

            self._client = self._learning(MeshesClient.from_settings(self.settings), self._own_redactor)
        return self._client

    def _tenant_client(self, caller: Caller, redactor: Redactor) -> MeshesClient:
        from meshes_mcp.api.client import MeshesClient, SharedTransport

        if self._shared_transport is None:
            self._shared_transport = SharedTransport()
        client = MeshesClient.from_settings(self.settings, caller.key, transport=self._shared_transport)
        return self._learning(client, redactor)

    def _learning(self, client: MeshesClient, redactor: Redactor) -> MeshesClient:
        """The client as the tools use it: every connection secret that passes through goes to `redactor`."""
        from meshes_mcp.server.secrets import LearningClient

        return LearningClient(client, redactor, self.secret_keys)

    def secret_keys(self, integration_type: str | None) -> frozenset[str]:
        """The credential metadata keys of an integration (none for an unknown type)."""
        from meshes_mcp.server.tools.integrations import secret_fields

        key = (id(self._catalog), integration_type)  # a refreshed catalogue is asked again
        if key not in self._secret_keys:
            self._secret_keys[key] = secret_fields(self._record(integration_type))
        return self._secret_keys[key]

    def _record(self, integration_type: str | None) -> dict[str, Any] | None:
        from meshes_mcp.api.catalog import load_catalog

        catalog = self._catalog or load_catalog()
        if catalog.get(integration_type or "") is None:
            return None
        return next((r for r in catalog.records() if r.get("type") == integration_type), None)

    async def aclose(self) -> None:
        if self.tenants is not None:
            self.tenants.clear()
        if self._shared_transport is not None:
            transport, self._shared_transport = self._shared_transport, None
            await transport.close()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def default_workspace(self) -> str | None:
        """The caller's X-Meshes-Workspace-Id when each request brings its own keys, else MESHES_WORKSPACE_ID."""
        if self.tenants is not None:
            caller = current_caller.get()
            return caller.workspace_id if caller is not None else None
        return self.settings.workspace_id

    def workspace(self, given: str | None, param: str = "workspace") -> str:
        """The workspace argument, else the configured default, else an error that says how to get one."""
        workspace = given or self.default_workspace()
        if not workspace:
            default = "send X-Meshes-Workspace-Id" if self.tenants is not None else "set MESHES_WORKSPACE_ID"
            raise ToolError(
                f"{param} is required: pass a workspace UUID (list_workspaces shows them) or {default} "
                "to make it the default."
            )
        return workspace

    async def catalog(self) -> Catalog:
        """The embedded catalogue, refreshed once from `GET /integrations` when the API answers."""
        from meshes_mcp.api.catalog import load_catalog

        if self._catalog is None:
            self._catalog = load_catalog()
        if not self._catalog_live and self.settings.machine_key() is not None:
            self._catalog_live = True  # one try per process: a failing API must not slow every call
            try:
                page = await self.client().list_integrations()
                records = [r.model_dump(mode="json") for r in page.records]
                if records:
                    self._catalog = self._catalog.refreshed(records)
            except Exception as exc:  # the embedded copy is a complete fallback
                log.info("integration catalogue not refreshed: %s", type(exc).__name__)
        return self._catalog

    # --- results ----------------------------------------------------------------------------

    def result(self, data: dict[str, Any], *, secret_keys: frozenset[str] = frozenset()) -> CallToolResult:
        """A tool's result, redacted and pruned. Its `next` hint is dropped when it names a tool this server
        did not register (read-only mode, a toolset left out): the agent could not make that call."""
        if isinstance(data.get("next"), str):
            data = {**data, "next": self.enabled.hint(data["next"])}
        return tool_result(prune(self.redactor.data(data, secret_keys)))

    def redact_message(self, message: str) -> str:
        return self.redactor.text(message)


# What a tool or resolver receives from the SDK: the request's context, whose lifespan state is the Runtime
# (the server's lifespan yields it, and closes its API client when the server stops).
ToolContext = Context[Runtime]


def runtime_of(ctx: ToolContext) -> Runtime:
    """The server's Runtime, from the lifespan state of the request."""
    return ctx.request_context.lifespan_context


def problems_text(problems: list[Problem]) -> str:
    return "\n".join(f"{p.param}: {p.msg}" for p in problems)
