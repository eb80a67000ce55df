"""Storage: the async engine, ORM models and Alembic migrations."""
