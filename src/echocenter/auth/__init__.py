"""Users, password hashing, JWT and the ``CurrentUser`` / ``CurrentAdmin`` dependencies."""
