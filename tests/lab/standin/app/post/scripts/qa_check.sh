#!/usr/bin/env bash
# NetMon QA checklist: run on the server after a deploy. Exits non-zero on a critical failure.
set -u
fail=0
critical() { echo "CRITICAL: $*"; fail=1; }

if curl -sf -o /dev/null --max-time 10 http://localhost:8000/api/health; then
  echo "OK: backend health"
else
  critical "backend health check failed (http://localhost:8000/api/health)"
fi
if curl -sf -o /dev/null --max-time 10 http://localhost/; then
  echo "OK: frontend"
else
  echo "WARNING: frontend did not answer on http://localhost/"
fi
exit "$fail"
