"""Ask the user before a destructive call, through elicitation when the client supports it.

A destructive tool takes a parameter annotated `Confirmed` whose resolver returns `ask(ctx, question)`:
an `Elicit` when the client declared form elicitation, else `NOT_ASKED` so the call proceeds. Asking
a client that lacks the capability is a protocol error, hence the check first; such clients gate
destructive tools themselves through their approval UI and the `destructiveHint` annotation.
The tool body then calls `require_yes(outcome, "Not deleted")`, which stops the call unless the user
said yes.
"""

from __future__ import annotations

from typing import Any

from mcp.server.elicitation import AcceptedElicitation, CancelledElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit
from pydantic import BaseModel, Field


class Confirmation(BaseModel):
    """The form the user sees: one checkbox."""

    confirm: bool = Field(title="Confirm", description="Yes, go ahead")


# What a destructive tool's resolver hands over: the user's answer, or NOT_ASKED.
Confirmed = ElicitationResult[Confirmation]
NOT_ASKED = Confirmation(confirm=True)


def can_elicit(ctx: Context[Any, Any]) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` means form)."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def ask(ctx: Context[Any, Any], question: str) -> Confirmation | Elicit[Confirmation]:
    return Elicit(question, Confirmation) if can_elicit(ctx) else NOT_ASKED


def require_yes(outcome: Confirmed, not_done: str) -> None:
    """Stop the call, with nothing changed, unless the user confirmed (or could not be asked)."""
    if isinstance(outcome, AcceptedElicitation) and getattr(outcome.data, "confirm", False):
        return
    how = "dismissed the confirmation" if isinstance(outcome, CancelledElicitation) else "declined"
    raise ToolError(f"{not_done}: the user {how}. Nothing was changed; do not retry unless they ask.")
