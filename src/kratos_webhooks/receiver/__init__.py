"""The HTTPS receiver: a plain ASGI pipeline in front of an application.

Each stage of the pipeline lives in its own module, in the order a request
meets them: routing, access (source address), ratelimit, limits (size and
encoding), authenticity, payload, deduplication, dispatch. `server` runs the
pipeline under uvicorn with the service's own TLS context and connection limits.
"""
