"""Sources read a recipe's input into rows with a stable ``row_id``. One source per file."""
