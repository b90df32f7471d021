"""Worker processes: run queue items dispatched over SQS (see ``invokeai_saas.worker.process``)."""
