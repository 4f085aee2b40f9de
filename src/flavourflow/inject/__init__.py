"""Inject stage: the exported network's scores written back next to the original ntuples, as a
friend tree (one entry per event, jets aligned by event number and jet index) and as HDF5.

Needs no TensorFlow: it runs the lwtnn network with the numpy evaluator.
"""
