"""Models, data and local training. Knows nothing of Flower or encryption."""
