"""GET /bedrock/inference-profiles and /bedrock/foundation-models: what the key may use, in
Bedrock's control-plane shapes (Claude Code in Bedrock mode asks for the system-defined
profiles when it starts).

The key is required (as a Bearer token, as ``AWS_BEARER_TOKEN_BEDROCK`` sends it): a listing
would otherwise show anyone the gateway's models. Claude Code 2.1.332 asks without one, takes
the 401 quietly, and goes on with its configured model (tests/e2e cover it).
"""

from __future__ import annotations

import orjson

from sluice.base.asgi import Receive, Scope, Send, send_bytes
from sluice.base.clock import new_request_id
from sluice.core.steps.identify import presented_key
from sluice.errors import GatewayError
from sluice.server.models_route import visible_models
from sluice.server.services import Services
from sluice.translate.bedrock_errors import bedrock_error
from sluice.translate.bedrock_responses import list_foundation_models, list_inference_profiles

LISTINGS = ("/bedrock/inference-profiles", "/bedrock/foundation-models")


async def handle_bedrock_listing(
    services: Services, scope: Scope, receive: Receive, send: Send
) -> None:
    request_id = new_request_id()
    rid = [(b"x-amzn-requestid", request_id.encode("ascii"))]
    try:
        key = await services.keys.authenticate(presented_key(scope["headers"])[0])
        models = [(m.id, m.display_name) for m in await visible_models(services, key)]
    except GatewayError as err:
        services.metrics.refused(err)  # metrics: auth failures
        status, headers, body = bedrock_error(err.status, err.wire_type or err.code, err.message)
        await send_bytes(send, status, body, [*headers, *rid])
        return
    if scope["path"] == LISTINGS[0]:
        payload = list_inference_profiles(models)
    else:
        payload = list_foundation_models(models)
    await send_bytes(
        send, 200, orjson.dumps(payload), [(b"content-type", b"application/json"), *rid]
    )
