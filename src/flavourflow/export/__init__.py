"""Export stage: convert a trained Keras 3 model to lwtnn's LightweightGraph JSON, check it
against Keras with an independent numpy evaluator (closure), and write the deployable files.

Only :mod:`flavourflow.export.evaluator` is importable without TensorFlow/Keras.
"""
