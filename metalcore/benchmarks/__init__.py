"""What ``python -m metalcore.bench`` measures: the cache build, the loaders and training, against the study's path."""
