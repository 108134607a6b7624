"""`thoth serve`: the enforcer, event ingestion, approvals, audit chain and control-plane API."""
