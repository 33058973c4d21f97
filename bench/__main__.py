"""Run the benchmark scenarios: ``python -m bench [--repeat N] [--only NAME]``."""
from bench.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
