"""preprocess: split, resample in (pT, |eta|), normalise and write shuffled `.npy` memmaps
(jet and track inputs) plus `variables.json` for one model."""
