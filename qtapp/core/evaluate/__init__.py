"""The parent side of evaluation: PPL/KLD run specs and checks, curves and their stored run,
statistics as llama.cpp prints them, the base log-prob cache, memory in use."""
