"""aiconf: evidence that a Kubernetes cluster meets the CNCF Kubernetes AI Conformance checklist."""

__version__ = "0.1.0"
