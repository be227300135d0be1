"""Everything Qt. A thin layer over qtapp.core."""
