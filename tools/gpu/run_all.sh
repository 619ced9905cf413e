#!/usr/bin/env bash
# The real-GPU evidence run, in ONE device call: machine facts, accelerator metrics (exporter + bf16 load + scrapes),
# secure accelerator access (device probe in runc containers), then the `gpu`-marked tests.
#
# On the device machine, from the repository root, with Debian's runc carried in .gpu-carry (tools/gpu/fetch_runc.sh):
#   set -o pipefail; bash tools/gpu/run_all.sh 2>&1 | tee $OUT/log
# Writes into $OUT (8 files at most come back): machine.txt, metrics.json, gpu_series.png, presence_matrix.png,
# isolation.json, visibility_matrix.png, raw.tar.gz (every scrape, probe, bundle config, runc log), and the log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/aiconf-gpu-out}
W=/tmp/aiconf-gpu
rm -rf "$W" /tmp/aiconf-runc
mkdir -p "$W" "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# NVLink multicast stays off (the lender's rule for these machines), though nothing here uses NCCL
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PATH=$PATH:/usr/local/nvidia/bin
RUNC=$PWD/.gpu-carry/usr/sbin/runc
LIBDIR=$PWD/.gpu-carry/usr/lib/x86_64-linux-gnu
LOAD_SECONDS=${LOAD_SECONDS:-60}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"; uname -a; head -2 /etc/os-release
  nvidia-smi -L
  nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total,pci.bus_id,power.limit --format=csv
  echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)"; python3 -V
  python3 -m pip list 2>/dev/null | grep -i -E "^(torch|nvidia-ml-py|prometheus.client|pandas|matplotlib|pytest) "
  LD_LIBRARY_PATH=$LIBDIR "$RUNC" --version
  nvidia-smi topo -m
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

echo "== accelerator metrics =="
python3 tools/gpu/metrics_run.py --out "$W/metrics" --load-seconds "$LOAD_SECONDS"
echo "metrics rc $?"
echo "== secure accelerator access =="
python3 tools/gpu/isolation_run.py --out "$W/isolation" --runc "$RUNC" --libdir "$LIBDIR" --work /tmp/aiconf-runc
echo "isolation rc $?"
echo "== gpu tests =="
AICONF_RUNC=$RUNC AICONF_RUNC_LIBDIR=$LIBDIR timeout 400 python3 -m pytest -q -p no:cacheprovider -rs -m gpu tests/gpu \
  > "$W/pytest.txt" 2>&1
echo "pytest rc $?"
tail -25 "$W/pytest.txt"

cp "$W"/metrics/{metrics.json,gpu_series.png,presence_matrix.png} "$OUT"/ 2>/dev/null
cp "$W"/isolation/{isolation.json,visibility_matrix.png} "$OUT"/ 2>/dev/null
tar czf "$OUT/raw.tar.gz" -C "$W" .
ls -la "$OUT"
