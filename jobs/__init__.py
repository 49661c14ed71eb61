"""jobs: one paid fal request from start to AUDIO, and a node run's cost told to the user.

The job runner (job: one paid request's story, claim or reuse, submit, follow, keep), its waits (waiting:
Cancel-aware sleeps, retried calls, following a request on fal until it completes), its input files (uploads)
and result files (keep: download, keep, decode), what a request keeps from fal's response (results), the fal
Client's per-workflow options (options: timeouts, output folder, spend limit, request caps), and the estimate
before paying and the final status of a run (spend), and the requests in flight now (live, for the editor's
fal panel).

May import: core, media, transport, money.
"""
