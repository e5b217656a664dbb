#!/usr/bin/env bash
# The steps the CI examples run, in one place.
#   pipeline.sh pr     validate → plan (saved) → markdown comment parts → policy check
#   pipeline.sh apply  apply exactly the saved plan, holding the stack's lock (on the remote too)
# Environment: MLOPS (the binary, default `mlops`), MLOPS_ENV (environment), MLOPS_LOCK_REMOTE
# (a Git remote to lock on, e.g. `origin`), PLAN (default plan.json), COMMENT_DIR (default plan-comment).
set -euo pipefail
MLOPS=${MLOPS:-mlops}
PLAN=${PLAN:-plan.json}
COMMENT_DIR=${COMMENT_DIR:-plan-comment}

case "${1:-}" in
  pr)
    "$MLOPS" validate
    status=0
    "$MLOPS" plan --out "$PLAN" --detailed-exitcode >/dev/null || status=$?
    if [ "$status" -eq 1 ]; then exit 1; fi   # 0: no changes, 2: changes
    "$MLOPS" show "$PLAN" --format markdown --parts-dir "$COMMENT_DIR" >/dev/null
    "$MLOPS" check "$PLAN"                    # exit 3: blocked by policy
    echo "plan: $PLAN; comment parts: $(ls "$COMMENT_DIR" | tr '\n' ' ')"
    ;;
  apply)
    "$MLOPS" apply "$PLAN"
    ;;
  *)
    echo "usage: pipeline.sh pr|apply" >&2
    exit 2
    ;;
esac
