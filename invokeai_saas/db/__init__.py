"""SQLAlchemy engine factories (and, from the PostgreSQL issue on, the table definitions)."""
