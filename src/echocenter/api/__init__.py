"""HTTP routers: thin, one per resource; services hold the logic."""
