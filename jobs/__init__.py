"""jobs: one paid fal request from start to AUDIO, and a node run's cost told to the user.

The job runner (job: claim or reuse, upload, submit, follow, keep, decode), what a request keeps from fal's
response (results), the fal Client's per-workflow options (options: timeouts, output folder, spend limit,
request caps), and the estimate before paying and the final status of a run (spend).

May import: core, media, transport, money. spend imports the job runner where it uses it: the editor's price
badges use spend without running any job.
"""
