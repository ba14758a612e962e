"""The Azure Functions app: wiring only. Each function hands its trigger's input to one call in `opus.azure.triggers`.

One `DFApp` holds every function (the worker's indexer accepts one app object). Nothing connects at import: the
process's runtime (`opus.azure.runtime`) is built on the first invocation and reused. Auth level is anonymous on
every function: Opus authenticates API calls itself (API keys, HMAC), function keys are not the boundary.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from opus.azure import triggers
from opus.azure.orchestration import FAIL_ACTIVITY, SETTLE_ACTIVITY, run_orchestrator
from opus.ports import CONSOLIDATE_QUEUE, WORK_QUEUE

SERVICE_BUS_CONNECTION = "ServiceBusConnection"

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.function_name("nightly")
@app.timer_trigger(arg_name="timer", schedule="%OPUS_SCHEDULE%", use_monitor=True)
@app.durable_client_input(client_name="client")
async def nightly(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    await triggers.nightly(client)


@app.function_name("housekeeping")
@app.timer_trigger(arg_name="timer", schedule="%OPUS_HOUSEKEEPING_SCHEDULE%", use_monitor=True)
def housekeeping(timer: func.TimerRequest) -> None:
    triggers.housekeeping()


@app.function_name("work_items")
@app.service_bus_queue_trigger(arg_name="message", queue_name=WORK_QUEUE, connection=SERVICE_BUS_CONNECTION)
@app.durable_client_input(client_name="client")
async def work_items(message: func.ServiceBusMessage, client: df.DurableOrchestrationClient) -> None:
    await triggers.work_item(message, client)


@app.function_name("consolidate")
@app.service_bus_queue_trigger(arg_name="message", queue_name=CONSOLIDATE_QUEUE, connection=SERVICE_BUS_CONNECTION)
def consolidate(message: func.ServiceBusMessage) -> None:
    triggers.consolidate(message)


app.orchestration_trigger(context_name="context")(run_orchestrator)


@app.function_name(SETTLE_ACTIVITY)
@app.activity_trigger(input_name="payload")
def settle_run(payload: object) -> str:
    return triggers.settle_activity(payload)


@app.function_name(FAIL_ACTIVITY)
@app.activity_trigger(input_name="payload")
def fail_run(payload: object) -> bool:
    return triggers.fail_activity(payload)


# With host.json's `routePrefix: ""`, `/health` and `/api/v2/...` keep the paths the ASGI app serves.
@app.function_name("http_api")
@app.route(route="{*path}", auth_level=func.AuthLevel.ANONYMOUS,
           methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
@app.durable_client_input(client_name="client")
async def http_api(
    req: func.HttpRequest, context: func.Context, client: df.DurableOrchestrationClient,
) -> func.HttpResponse:
    response: func.HttpResponse = await triggers.http(req, context, client)
    return response
