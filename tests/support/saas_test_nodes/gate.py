"""``saas_test_gate``: a node that holds its run until the test says go, so a test can act at an exact moment of
a run (stop PostgreSQL right before the item's completion write, for one)."""

# No ``from __future__ import annotations``: InvokeAI reads ``invoke``'s return annotation as a class.
import time
from pathlib import Path

from invokeai.app.invocations.baseinvocation import BaseInvocation, invocation
from invokeai.app.invocations.fields import InputField
from invokeai.app.invocations.primitives import IntegerOutput
from invokeai.app.services.shared.invocation_context import InvocationContext


@invocation("saas_test_gate", title="Gate (test)", tags=["test"], category="test", version="1.0.0", use_cache=False)
class SaasTestGateInvocation(BaseInvocation):
    """Creates ``reached_file``, then waits (up to ``timeout`` seconds, stopping early when the session is
    canceled) until ``release_file`` exists; outputs how many times it was reached (1, 2 on a rerun...)."""

    reached_file: str = InputField(description="Created (one line per run) when the node starts")
    release_file: str = InputField(description="The node returns once this file exists")
    timeout: float = InputField(default=120.0, ge=0, le=600, description="Longest wait")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        reached = Path(self.reached_file)
        with reached.open("a") as f:
            f.write("reached\n")
        deadline = time.monotonic() + self.timeout
        while not Path(self.release_file).exists() and time.monotonic() < deadline and not context.util.is_canceled():
            time.sleep(0.02)
        return IntegerOutput(value=len(reached.read_text().splitlines()))
