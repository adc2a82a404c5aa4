"""Talking to a running nats-server in operator mode: pushing an account JWT.

Thin shell over nats-py. A system-account user sends the new JWT to
``$SYS.REQ.CLAIMS.UPDATE``; the server checks the operator's signature, stores it in its
resolver directory (so it survives a restart) and applies it at once: a user whose JWT was
revoked is disconnected and refused from then on.
"""

from __future__ import annotations

import json

from lattice.errors import NatsServerError
from lattice.natsutil import NatsOptions, connect

CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"


async def push_account_jwt(url: str, system_creds: str, token: str, *,
                           timeout: float = 5.0) -> None:
    """Send ``token`` to the server(s) at ``url``; NatsServerError when it refuses."""
    nc = await connect(NatsOptions(url=url, name="vinculum-auth", creds_file=system_creds),
                       initial_timeout=timeout)
    try:
        reply = await nc.request(CLAIMS_UPDATE, token.encode(), timeout=timeout)
    finally:
        await nc.close()
    try:
        answer = json.loads(reply.data)
    except ValueError:
        raise NatsServerError(f"the server's answer to a claims update is not JSON: "
                              f"{reply.data[:200]!r}") from None
    error = answer.get("error") if isinstance(answer, dict) else None
    if error:
        raise NatsServerError(f"the server refused the account JWT: "
                              f"{error.get('description', error)}")
