"""Reports: tables, plots and the HTML report built from the results table."""
