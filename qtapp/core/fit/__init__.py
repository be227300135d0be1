"""The planner: quant catalogue and recipes, weights, KV cache and compute, placement across
devices, speed model, quality order, and exact figures cached from llama.cpp's dry runs."""
