"""Routes that replace stock routes of the same path and method (see ``patches.api_app_route_overrides``)."""
