"""Alembic migrations, shipped inside the package so `thawline db upgrade` works from a wheel."""
