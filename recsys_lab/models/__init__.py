"""Models: one file per model, pure torch.nn, built from the Schema and shared layers."""
