"""Kubernetes autoscaling of inferline engine fleets: the HPA controller (v1.34) as pure code, KEDA, and a
discrete-event simulator of traffic, gateway, SIMULATED engines, pods and metrics (`inferline autoscale`).

The controller is usable on its own: `HorizontalController(spec).reconcile(now_s, ScaleTarget(...), metrics)`
with any `MetricsClient` (the simulator's, or one backed by Prometheus queries).
"""

K8S_VERSION = "v1.34"  # the Kubernetes release whose HPA controller hpa.py reproduces
