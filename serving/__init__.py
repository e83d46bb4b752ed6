"""Serving a trained classifier over HTTP: ``python cli.py serve MODEL_DIR``.

A face, like ``cli.py`` and the app: it parses requests and answers them; loading the model
and predicting are :mod:`training.inference`'s.

* :mod:`serving.model` loads a saved classifier once, with what was saved next to it (labels,
  training config, data version, metrics), and predicts under a lock;
* :mod:`serving.app` is the FastAPI app (``POST /predict``, ``GET /health``, ``GET /model``)
  with its request checks, and :func:`serving.app.serve` runs it with uvicorn.
"""

# Request limits (``--max-texts``, ``--max-chars``); here so that ``cli.py`` reads them without
# importing the server.
DEFAULT_MAX_TEXTS = 256
DEFAULT_MAX_CHARS = 10_000  # a text is truncated at max_length word pieces (~300 characters)
