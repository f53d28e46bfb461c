"""The broker: the job graph from the model, and running it."""
