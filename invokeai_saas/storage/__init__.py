"""Object storage for saas mode: the S3 client wrapper, the key layout and the PostgreSQL object index."""
