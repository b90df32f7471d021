"""Events: the Redis connection, and the relay that carries InvokeAI events between the processes of a deployment
(``events_redis`` publishes, ``relay`` replays them through stock routing in each API process)."""
