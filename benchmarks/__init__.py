"""Benchmarks: ratios measured side by side in one run against a lab of their own (see README.md).

Not tests: the machine is shared and noisy, so only ratios taken in the same run mean anything.
"""
