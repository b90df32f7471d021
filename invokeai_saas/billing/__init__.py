"""Billing: the Stripe client now; plans, checkout and webhooks arrive with the billing issue."""
