"""Users, password hashing, login throttling and JWTs (the ``CurrentUser`` / ``CurrentAdmin`` dependencies
built on them live in api/deps.py)."""
