"""Speed and scale figures, as ratios against baselines run in the same process (`verify bench` / `make bench`).

Kept out of the engine package: the engine never imports models, benchmarks may.
"""
