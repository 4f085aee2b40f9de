"""train: Keras 3 networks (tutorial, DL1, DIPS) trained from the preprocess memmaps."""
