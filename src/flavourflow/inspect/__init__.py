"""inspect: look at the inputs before training: per-flavour histograms and baseline ROCs."""
