"""SQL storage through SQLAlchemy 2 Core, on SQLite and PostgreSQL."""
