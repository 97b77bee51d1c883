"""Models, data and local training. Knows nothing of Flower's apps or of encryption
(it partitions data with flwr-datasets, Flower's data library, as a user's task may)."""
