"""A mutation is in force on every replica before its response returns.

The repositories bump the config version in the change's own transaction; here we wait, as
the CLI does (``cli.common.open_db``), until every live gateway has applied that version.
A replica that did not confirm in time is named in ``Sluice-Unconfirmed-Replicas``; the
change itself is committed, so the response still reports it (a retried create would mint
twice).
"""

from __future__ import annotations

from fastapi import Response

from sluice.admin.state import AdminState
from sluice.store import config_version

UNCONFIRMED_HEADER = "sluice-unconfirmed-replicas"


async def in_force(state: AdminState, response: Response) -> None:
    version = await config_version.current(state.engine)
    acked = await config_version.wait_applied(state.engine, version, state.ack_timeout_s)
    if acked.lagging:
        response.headers[UNCONFIRMED_HEADER] = ",".join(acked.lagging)
