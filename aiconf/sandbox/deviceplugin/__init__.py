"""The sandbox's fake NVIDIA GPU device plugin (kubelet device-plugin API v1beta1, Python + grpcio).

It runs beside the real node's kubelet (:mod:`aiconf.sandbox.realnode`), in the node's mount namespace, and makes
``nvidia.com/gpu`` a real extended resource of that node.

What is real:

- the kubelet's device manager and the scheduler's accounting: the plugin registers on
  ``/var/lib/kubelet/device-plugins/kubelet.sock``, advertises N devices over ``ListAndWatch`` (their IDs are the
  GPU UUIDs, as NVIDIA's plugin does), the node's capacity/allocatable shows ``nvidia.com/gpu: N``, and the kubelet
  calls ``Allocate`` for each container that requests GPUs;
- device isolation: each GPU is a host character device the plugin creates with ``mknod`` (major 195, minor N,
  ``<gpu dir>/dev/nvidiaN``, NVIDIA's numbers); ``Allocate`` returns it as a ``DeviceSpec`` so containerd adds it to
  that container only, together with a devices-cgroup rule ``c 195:N rw``. Every other container's devices cgroup
  denies it: opening (or ``mknod``-ing and opening) another GPU's node fails with EPERM;
- time-slicing (``--replicas N``, ``aiconf sandbox up --real-node-gpu-replicas N``): N devices per GPU with IDs
  ``<uuid>::<k>``, as NVIDIA's plugin advertises a time-sliced GPU; the kubelet and the scheduler account N units
  per GPU, and every container granted a replica gets that GPU's device node, so containers share it for real;
- attribution: the plugin asks the kubelet's pod-resources API (``List``) which pod and container hold which device
  and writes it to ``<gpu dir>/allocations.json`` for the DCGM simulation.

What is simulated: there is no GPU, no NVIDIA driver (an allowed open of ``/dev/nvidiaN`` ends in ENXIO), no NVML
and no CUDA. ``Allocate`` also mounts the fake ``nvidia-smi`` (:mod:`aiconf.workloads.fake_nvidia_smi`), the
node's minor→UUID map (``/etc/aiconf-gpu/devices``) and one writable load folder per granted GPU
(``/run/aiconf-gpu/<uuid>/``: a workload writes its simulated utilisation there, see
:mod:`aiconf.workloads.dcgm_sim`), and sets ``NVIDIA_VISIBLE_DEVICES=<uuids>`` as the NVIDIA container toolkit
would.

The gRPC code in ``v1beta1/`` and ``podresources_v1/`` is generated from the kubelet's ``api.proto`` files
(``k8s.io/kubelet`` v0.36.3) by :mod:`aiconf.sandbox.deviceplugin.gen` with grpcio-tools; at run time only
``grpcio`` and ``protobuf`` are needed.
"""
