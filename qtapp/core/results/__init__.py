"""Everything measured, kept: the SQLite store, start-up recovery, comparison rows, Pareto
frontier, exports and report charts."""
