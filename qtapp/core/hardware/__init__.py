"""What this machine can run: NVML probe and replay, host CPU and RAM, the llama.cpp build's
abilities, all as a typed HardwareReport."""
