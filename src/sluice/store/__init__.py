"""Persistence: SQLAlchemy Core tables, Alembic migrations, and small repositories."""
