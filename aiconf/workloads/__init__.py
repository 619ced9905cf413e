"""Programs that run inside pods or containers, not in the runner.

Each module is a standalone script (``python3 -m aiconf.workloads.<name>`` or copied into a container and run as a
file): stdlib first, optional dependencies imported lazily, so they run in small images and on the accelerator
machine alike.

- :mod:`aiconf.workloads.device_probe`: what accelerator devices a container can see and open (one JSON document).
- :mod:`aiconf.workloads.nvml_exporter`: a demo/test exporter serving DCGM-named metrics from NVML.
- :mod:`aiconf.workloads.gpu_load`: a bf16 matrix-product load on one GPU for a fixed time (needs PyTorch).
"""
