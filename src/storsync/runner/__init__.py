"""The imperative shell around the engine: scan, plan, transfer, verify, record."""
