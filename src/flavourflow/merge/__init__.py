"""merge: the per-file dumps of one sample -> one HDF5 file, same layout."""
