"""The Hardware page: GPU, host and llama.cpp build cards and the live usage chart."""
