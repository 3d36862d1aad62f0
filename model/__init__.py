"""The model: architectures, training recipe, export, evaluation and benchmark."""
