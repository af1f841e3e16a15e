# Sourced by the scripts: the Python tools (moto, schemathesis, cfn-lint, the
# SAM CLI, cargo-lambda) live in a virtual environment the scripts own,
# because Debian's system Python refuses `pip install` (PEP 668). CSS_VENV
# moves it (CI points it at an empty directory); default .venv in the repo.
CSS_VENV="${CSS_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}"
export CSS_VENV
export PATH="$CSS_VENV/bin:$PATH"
# The test harness starts moto with this interpreter.
export PYTHON="$CSS_VENV/bin/python3"
