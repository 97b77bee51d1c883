"""The Flower layer: the only place where ML code and Flower meet."""
