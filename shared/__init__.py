"""emnist-edge core: framework-free model loading, preprocessing and classification.

Nothing in this package imports ``azure.functions``; the function app only adapts triggers
and bindings to the functions defined here.
"""
