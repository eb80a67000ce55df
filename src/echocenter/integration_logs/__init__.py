"""The integration log: what happened on each connector, for admins (API and web page)."""
