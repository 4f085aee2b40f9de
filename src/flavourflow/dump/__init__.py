"""dump: ROOT ntuples -> HDF5 in the training-dataset-dumper layout (`jets`, `tracks`)."""
