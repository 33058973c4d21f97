"""Run the benchmark scenarios: ``python -m bench [--repeat N] [--only NAME]``; ``--http [...]`` for the HTTP one."""
from bench.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
