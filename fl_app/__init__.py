"""fl_app: federated Keras training on Flower with homomorphic-encryption aggregation."""
