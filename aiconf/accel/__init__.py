"""Pure logic for the accelerator checks (``accelerator_metrics``, ``secure_accelerator_access``).

No cluster access and no Kubernetes import here: these modules take scraped text, probe JSON and time series, and
return findings and charts. They run unchanged on the accelerator machine (Python 3.12 with ``prometheus_client``,
pandas and matplotlib, nothing else of ours), which is how the real-GPU evidence in ``docs/evidence/`` was made
through the same code the notebooks use.

- :mod:`aiconf.accel.dcgm`: Prometheus exposition parsing, DCGM (and configurable) metric names, per-GPU presence,
  format validity, OpenTelemetry ``hw.*`` name map, load-window analysis, charts.
- :mod:`aiconf.accel.isolation`: device-probe JSON, the pods/containers x UUID visibility matrix, verdicts T1-T4, chart.
"""
