"""money: nothing paid twice, nothing lost, every dollar told.

The books of paid requests (journal: the one writer of each request's journal row and ledger row, in one
transaction per step: claimed with its estimate, accepted with fal's id, result kept and cost settled, failed
at $0, possibly billed; a crash resumes rather than pays again), who holds a claim (owner), what the ledger's
rows mean, the daily limit and the fal Spend report's text (ledger), prices from fal's pricing API or the
pack's table (pricing), and the SQLite WAL settings (wal).

May import: core. Never transport (the pricing API's TLS context is core.tls), never media.
"""
