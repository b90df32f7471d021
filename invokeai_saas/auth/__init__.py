"""Authentication beyond stock's login: API keys for programmatic access, gated by the plan's ``api_access``."""
