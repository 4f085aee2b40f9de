"""preprocess: split, normalise and write `.npy` memmaps plus `variables.json` for one model."""
