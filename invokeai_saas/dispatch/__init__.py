"""Dispatch of runnable queue items to worker processes (SQS)."""
