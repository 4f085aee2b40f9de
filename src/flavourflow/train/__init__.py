"""train: Keras 3 networks trained from the preprocess memmaps."""
