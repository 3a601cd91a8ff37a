"""An OpenTelemetry-Python shop that knows nothing of orderscope: it posts an order whose id is
only in the JSON body, with `traceparent` from the Python propagator and no baggage.

Usage: foreign_caller.py URL ORDER_ID. Prints one JSON line: the caller's trace and span ids, the
headers it sent, and the response."""

import json
import sys

import requests
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace import TracerProvider

url, order_id = sys.argv[1], sys.argv[2]
trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("shop")

with tracer.start_as_current_span("POST /orders", kind=trace.SpanKind.CLIENT) as span:
    headers = {"content-type": "application/json"}
    inject(headers)  # the default propagators: tracecontext, baggage (empty, so not sent)
    response = requests.post(
        url,
        data=json.dumps({"order_id": order_id, "channel": "web", "items": ["bolt"]}),
        headers=headers,
        timeout=10,
    )
    sc = span.get_span_context()
    print(
        json.dumps(
            {
                "trace_id": format(sc.trace_id, "032x"),
                "span_id": format(sc.span_id, "016x"),
                "sent": headers,
                "status": response.status_code,
                "body": response.text,
            }
        )
    )
