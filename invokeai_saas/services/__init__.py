"""PostgreSQL (and, later, S3 / SQS) implementations of InvokeAI's service base classes, laid out like
``invokeai/app/services/<name>/``: ``<name>_postgres.py`` beside upstream's ``<name>_sqlite.py``."""
