"""The study: sweeps of training runs, their fits, loss-vs-return and loss-vs-quality, the report.

``runner`` runs the stages in order; ``steps`` holds one function per stage; ``spec`` and
``presets`` describe a study; ``sweep`` runs the training runs; ``adapters`` translate a study
into calls to the packages it drives (data collection, tokenizer, training, fits).
"""
