"""Datasets: real CAMUS / EchoNet-Dynamic readers, the synthetic phantom, the prepared clip store,
the torch clip dataset and clip-consistent augmentation."""
