"""``GET /api/v1/saas/health``: versions, and for every backend the active implementation and a live probe."""
