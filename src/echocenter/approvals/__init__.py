"""Approvals: a durable state machine in the database; every decision happens exactly once."""
