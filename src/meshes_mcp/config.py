"""Settings from the environment and command-line flags (flags win).

Variable names match the official Meshes MCP server so an existing client configuration works
unchanged: MESHES_ACCESS_KEY, MESHES_SECRET_KEY, MESHES_ORG_ID (or MESHES_ORGANIZATION_ID),
MESHES_API_URL; ours add MESHES_WORKSPACE_ID, MESHES_PUBLISHABLE_KEY, MESHES_TOOLSETS and
MESHES_READ_ONLY.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from meshes_mcp.api.auth import MachineKey, mask

DEFAULT_API_URL = "https://api.meshes.io"
_VERSIONED = re.compile(r"/api/v\d+$")

CREDENTIALS_HELP = (
    "Set MESHES_ACCESS_KEY, MESHES_SECRET_KEY and MESHES_ORG_ID (a machine key from the Meshes "
    "dashboard, Profile → API Keys), or start the server with --sandbox to use the embedded local "
    "sandbox with no account."
)


def api_base_url(url: str) -> str:
    """`https://api.meshes.io` → `https://api.meshes.io/api/v1`; a URL already ending in /api/vN is kept."""
    url = url.strip().rstrip("/")
    return url if _VERSIONED.search(url) else f"{url}/api/v1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESHES_", extra="ignore", populate_by_name=True)

    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    org_id: str | None = Field(
        default=None, validation_alias=AliasChoices("org_id", "MESHES_ORG_ID", "MESHES_ORGANIZATION_ID")
    )
    api_url: str = DEFAULT_API_URL
    workspace_id: str | None = None
    publishable_key: SecretStr | None = None
    toolsets: str | None = None
    read_only: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    @field_validator("access_key", "secret_key", "publishable_key", "org_id", "workspace_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An empty variable in a client config file means "not set", not "set to nothing".
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def base_url(self) -> str:
        return api_base_url(self.api_url)

    def machine_key(self) -> MachineKey | None:
        if self.access_key and self.secret_key and self.org_id:
            return MachineKey(self.access_key.get_secret_value(), self.secret_key.get_secret_value(), self.org_id)
        return None

    def missing_credentials(self) -> list[str]:
        names = {
            "MESHES_ACCESS_KEY": self.access_key,
            "MESHES_SECRET_KEY": self.secret_key,
            "MESHES_ORG_ID": self.org_id,
        }
        return [name for name, value in names.items() if not value]

    def describe(self) -> dict[str, str]:
        """Where the server points and with what, credentials masked: safe to log."""
        return {
            "api_url": self.base_url,
            "access_key": mask(self.access_key.get_secret_value() if self.access_key else None),
            "secret_key": "set" if self.secret_key else "(not set)",
            "org_id": self.org_id or "(not set)",
            "workspace_id": self.workspace_id or "(not set)",
            "publishable_key": "set" if self.publishable_key else "(not set)",
            "toolsets": self.toolsets or "default",
            "read_only": str(self.read_only).lower(),
        }
