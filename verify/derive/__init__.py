"""Stage 2, derive: the symbolic algebra (sympy and a fast exact polynomial), per-layer proofs lifted by composition,
the steerability constraint, twins generated from a module's code with torch.fx, and binding a twin to the module."""
