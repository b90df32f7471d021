"""Events: the Redis connection now; the relay of InvokeAI events across processes comes with the workers."""
