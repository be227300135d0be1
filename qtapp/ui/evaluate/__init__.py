"""The Evaluate page: controls, live curves and the memory-in-use panel."""
