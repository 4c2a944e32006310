#!/usr/bin/env bash
# Everything livepulse needs on a fresh machine: Java + Maven (for the local Kafka broker),
# a virtualenv with the project and its dev tools. Safe to run again; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
# Debian's Prometheus: promtool checks the config and rules, and the server runs
# tests/test_prometheus_live.py. Without it those tests skip locally and fail under CI=true.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    need_apt+=(prometheus)
  else
    echo "setup: no promtool/prometheus (apt-get install prometheus); their tests will skip" >&2
  fi
fi
# Debian's Chromium (optional): renders the HTML report headless in its test; skipped without it.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  need_apt+=(chromium)
fi
# A CJK font, so that the live screen's Chinese labels render in Chromium (its tests, the
# README's screenshot); a small one (WenQuanYi Zen Hei, ~10 MB).
if [ ! -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] && [ "$(id -u)" -eq 0 ]; then
  need_apt+=(fonts-wqy-zenhei)
fi
if ((${#need_apt[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]}) and rerun" >&2
    exit 1
  fi
  echo "setup: installing ${need_apt[*]} from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.livepulse-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing livepulse and its dev tools into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
