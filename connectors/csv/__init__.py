"""The ``csv`` connector: contacts or companies in a CSV file with a header row."""

from connectors.csv.connector import CsvConnector, CsvSettings

__all__ = ["CsvConnector", "CsvSettings"]
