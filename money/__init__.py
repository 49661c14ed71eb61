"""money: nothing paid twice, nothing lost, every dollar told.

The journal of paid requests (journal: claimed, accepted with fal's id, result kept; a crash resumes rather than
pays again), who holds a claim (owner), the spend ledger and the daily limit (ledger), prices from fal's
pricing API or the pack's table (pricing), and the SQLite WAL settings both files share (wal).

May import: core. Never transport (the pricing API's TLS context is core.tls), never media.
"""
