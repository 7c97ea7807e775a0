# The two commands of the README. Each runs ./setup.sh first (idempotent).
.PHONY: reports test bench setup
setup:
	./setup.sh

reports: setup
	.venv/bin/verify report; status=$$?; .venv/bin/python -m benchmarks.power --out reports || status=1; exit $$status

test: setup
	.venv/bin/python -m pytest -q

bench: setup
	.venv/bin/verify bench
