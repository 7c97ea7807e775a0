# The two commands of the README. Each runs ./setup.sh first (idempotent).
.PHONY: reports test bench setup
setup:
	./setup.sh

# The architecture reports and the power page are independent (different folders, one thread each), so they run side
# by side; the reports on two worker processes (--jobs 2, longest architecture first), which keep both cores busy once
# the power page (~3.5 min of CPU) is done. --cache loads a trained checkpoint only when its training fingerprint matches the current code,
# data and settings (training is deterministic: it is the model training would produce); anything else retrains.
reports: setup
	.venv/bin/python -m benchmarks.power --out reports --quiet & power=$$!; \
	.venv/bin/verify report --cache --jobs 2; status=$$?; \
	wait $$power || status=1; exit $$status

# two workers on two cores; --dist loadgroup keeps an architecture's claims on one worker (one check, not one per
# worker), see verify/pytest_plugin.py
test: setup
	.venv/bin/python -m pytest -q -n 2 --dist loadgroup

bench: setup
	.venv/bin/verify bench
