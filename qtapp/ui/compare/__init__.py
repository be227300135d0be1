"""The Compare page: the table, charts, budget panel and exports."""
