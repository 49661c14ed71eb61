"""transport: talking to fal.

The gateway (upload, submit, status, cancel, result, download, on one process-wide network loop), the key
(credentials: environment or credentials file, never a widget), the endpoint ids a user types (endpoint_id),
the pack-wide cap on requests in flight (slots), and retrying a call, in one place for the submit, status,
result, upload and download (retry).

May import: core, and media (the gateway writes a data: URI result to disk with media.data_uri). Never money:
what a request costs is the business of money/ and of the job runner.
"""
