"""Jobs in child processes: Job (start, typed events, cancel, lifeline) and the events
themselves. ``engine/`` below is the child's side."""
