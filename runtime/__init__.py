"""What the encoder and the training loop stand on: device and precision, model resolution,
the encoder, progress and cancelling, input validation, time estimates."""
