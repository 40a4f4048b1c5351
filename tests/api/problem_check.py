"""The check schemathesis has no built-in for: every 4xx of business-logic is
an RFC 9457 problem document. Registered on import, so the CLI loads it too
(SCHEMATHESIS_HOOKS=problem_check)."""

from __future__ import annotations

import json

import schemathesis

PROBLEM_MEMBERS = {"type": str, "title": str, "status": int, "detail": str}


@schemathesis.check
def client_errors_are_problem_documents(ctx, response, case):
    """Every 4xx is application/problem+json with the RFC 9457 members, its status the response's."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == "application/problem+json", (
        f"{response.status_code} answered as {content_type!r}, not application/problem+json"
    )
    body = json.loads(response.content)
    for member, kind in PROBLEM_MEMBERS.items():
        assert isinstance(body.get(member), kind), f"problem member {member!r} missing or not {kind.__name__}: {body}"
    assert body["status"] == response.status_code, body
    return None
