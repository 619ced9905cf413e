"""Regenerate the gRPC modules from the vendored kubelet protos (needs grpcio-tools; run from the repo root).

``python -m aiconf.sandbox.deviceplugin.gen``. The ``api.proto`` files are copies of ``k8s.io/kubelet@v0.36.3``'s
``pkg/apis/deviceplugin/v1beta1/api.proto`` and ``pkg/apis/podresources/v1/api.proto``; they are compiled under
their path in this package so the generated imports are absolute (``aiconf.sandbox.deviceplugin.v1beta1``).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOS = ("aiconf/sandbox/deviceplugin/v1beta1/api.proto", "aiconf/sandbox/deviceplugin/podresources_v1/api.proto")


def main() -> int:
    from grpc_tools import protoc

    root = Path(__file__).resolve().parents[3]
    args = ["grpc_tools.protoc", f"-I{root}", f"--python_out={root}", f"--grpc_python_out={root}",
            *(str(root / p) for p in PROTOS)]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())
