"""Reports: terminal tables, JSON results, plots."""
