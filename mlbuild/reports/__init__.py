"""Reports for a recipe's ``[[reports]]``: each reads the final table and writes files into
``reports/`` (JSON, Markdown, PNG), linked from the dataset card. One report per file."""
