#!/usr/bin/env bash
# Runs one tiny federation twice — under Flower's own simulation runtime (Ray backend) and under the
# in-process grid — and prints both metrics lines; they should be identical.
#
#   bash scripts/check_flower_simulation.sh /path/to/sim-env/bin/python
#
# The first argument is a Python whose environment has this project's dependencies *and*
# "flwr[simulation]==1.42.0" (Ray, SQLAlchemy 2, FastAPI, rich 14): those pins clash with the
# project's, so it is a separate environment (see docs/federated.md). The second run uses .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SIM_PY=${1:?usage: $0 /path/to/python-with-flwr-simulation}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD RAY_DISABLE_USAGE_STATS=1
TINY=(data.num_users=40 data.num_train=3000 data.num_val=1000 data.num_test=2000 data.max_vocab=100
      fed.num_clients=4 fed.clients_per_round=2 fed.rounds=2 fed.local.epochs=3 fed.local.lr=0.01 seed=0)
OUT=$(mktemp -d)
"$SIM_PY" -m recsys_lab.federate "${TINY[@]}" runtime=flower_simulation paths.log_dir="$OUT/sim" | tail -1
"$PY" -m recsys_lab.federate "${TINY[@]}" runtime=inprocess paths.log_dir="$OUT/inprocess" | tail -1
