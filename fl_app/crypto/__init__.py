"""Homomorphic encryption with TenSEAL: presets, keys, packing, encrypt/decrypt/sum.

Knows nothing of Flower, Keras or TensorFlow (checked by import-linter).
"""
