"""Users, password hashing, login throttling and JWTs; ``deps.py`` turns them into the ``CurrentUser`` /
``CurrentAdmin`` dependencies."""
