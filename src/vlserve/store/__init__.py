"""Persistence: SQLAlchemy 2 models and sessions (SQLite by default, or PostgreSQL), Alembic migrations."""
