"""A local Kubernetes for developing and demonstrating the checks: a real upstream control plane built from Go
modules, kwok-simulated GPU nodes and control-plane add-ons, all as processes on 127.0.0.1."""
