"""``python -m scaling.metrics``: fetch, verify and convert the metric networks once."""

from scaling.metrics.weights import main

main()
