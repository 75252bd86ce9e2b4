"""The agent's prober (kubelet's ``pkg/kubelet/prober``): liveness, readiness and startup probes
of running containers, each probe of each container instance in an asyncio task of its own, off
the pod sync path.

- ``manager.ProbeManager``: what the pod workers use (``sync``, ``remove``, ``readiness``,
  ``started``, ``liveness_failures``, ``stop``).
- ``worker.Worker``: one probe of one container instance on its schedule.
- ``results``: outcomes, probe types and the threshold state machine (pure).
- ``targets``: from a probe spec to one attempt (handler, host, named port).
- one module per handler: ``exec_probe``, ``http_probe``, ``tcp_probe``, ``grpc_probe``.
- ``metrics.ProbeMetrics``: ``prober_probe_total`` and ``prober_probe_duration_seconds``.
"""

from pykubelet.prober.manager import ProbeManager
from pykubelet.prober.metrics import ProbeMetrics
from pykubelet.prober.results import Outcome, ProbeType, Result

__all__ = ["Outcome", "ProbeManager", "ProbeMetrics", "ProbeType", "Result"]
