"""The real rules of curated model nodes (data/nodes/*.json names them as "hook": "<module>.<Class>"): checks
across fields or against an input clip, request shapes a widget cannot hold, response shapes. Ranges, options,
lengths and required inputs are declared in the specs and checked by nodes/spec.py, not here."""
