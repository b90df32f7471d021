"""A custom node pack for tests and benchmarks of distributed execution, installed into an InvokeAI root's
``nodes`` folder the way an operator installs custom nodes (the API refuses to install them in saas mode).

- ``saas_test_sleep`` holds a worker for ``seconds`` (checking for cancellation every 20 ms, as stock's
  denoising step callback does), so tests can kill, cancel or hand back an item while it runs.
- ``saas_test_spin`` burns ``milliseconds`` of this thread's CPU time: a graph with a known CPU cost.
- ``saas_test_denoise`` has a denoiser's ``steps``, ``width`` and ``height`` and does no work: the plan's run-time
  checks treat it as a generation of that size, which needs no model weights.
- ``saas_test_gate`` (``gate.py``) holds its run until a file appears, so a test acts at an exact moment of a run.
"""

# No ``from __future__ import annotations``: InvokeAI reads ``invoke``'s return annotation as a class.
import time

from invokeai.app.invocations.baseinvocation import BaseInvocation, invocation
from invokeai.app.invocations.fields import InputField
from invokeai.app.invocations.primitives import IntegerOutput
from invokeai.app.services.shared.invocation_context import InvocationContext

from .gate import SaasTestGateInvocation  # noqa: F401  (registers the node)


# use_cache=False: stock caches node outputs by their inputs, so a second identical node would return at once
# without waiting (or burning CPU) at all.
@invocation("saas_test_sleep", title="Sleep (test)", tags=["test"], category="test", version="1.0.0", use_cache=False)
class SaasTestSleepInvocation(BaseInvocation):
    """Waits ``seconds``, stopping early when the session is canceled; outputs how many 20 ms slices it waited."""

    seconds: float = InputField(default=1.0, ge=0, le=600, description="How long to wait")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        deadline = time.monotonic() + self.seconds
        slices = 0
        while time.monotonic() < deadline and not context.util.is_canceled():
            time.sleep(0.02)
            slices += 1
        return IntegerOutput(value=slices)


@invocation("saas_test_spin", title="Spin (test)", tags=["test"], category="test", version="1.0.0", use_cache=False)
class SaasTestSpinInvocation(BaseInvocation):
    """Burns ``milliseconds`` of CPU time on the calling thread; outputs the loop count."""

    milliseconds: int = InputField(default=50, ge=0, le=60000, description="CPU time to burn")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        deadline = time.thread_time() + self.milliseconds / 1000
        loops = 0
        while time.thread_time() < deadline:
            loops += 1
        return IntegerOutput(value=loops)


@invocation(
    "saas_test_denoise",
    title="Denoise stand-in (test)",
    tags=["test"],
    category="test",
    version="1.0.0",
    use_cache=False,
)
class SaasTestDenoiseInvocation(BaseInvocation):
    """Shaped like a denoiser (steps, width, height) for the plan checks; outputs ``width``."""

    steps: int = InputField(default=1, ge=1, description="Denoising steps")
    width: int = InputField(default=512, ge=8, description="Generation width")
    height: int = InputField(default=512, ge=8, description="Generation height")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return IntegerOutput(value=self.width)
