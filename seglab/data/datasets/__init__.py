"""One module per data source: its dataset (decoding and label mapping) and its data module.

``base.py`` holds the contract every dataset follows; this package imports nothing by itself, so the
shared data module can use that contract while the dataset modules build on the data module.
``seglab.data`` and ``seglab`` export the data modules.
"""
