"""The Fit page: controls, the fit table, device bars, the model card and the exact-figure jobs."""
