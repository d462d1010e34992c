"""Getting a run back: differences between runs, reproduce steps and the store check."""
