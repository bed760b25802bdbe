"""Published claims as data (``expected/``), checked against qkit's measurements (``validate``)."""
