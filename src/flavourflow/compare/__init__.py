"""compare: every model and baseline on one sample's test jets: one ROC, one table."""
