"""Benchmarks: synthetic (paper's timing setup on the simulator) and runtime overhead."""
