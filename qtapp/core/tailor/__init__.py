"""Tailor: the best per-tensor quant mix for one model and one memory budget.

Owns the tensor groups (layer band x tensor class), the sensitivity scan's spec and cache
(measured KL-divergence increase per group and candidate type; the child side is
``qtapp.core.jobs.engine.tailor_scan``), the multiple-choice knapsack that picks one type per
group under a byte budget with llama.cpp's exact per-tensor sizes, and the recipe it yields.
"""
