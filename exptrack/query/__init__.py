"""The query engine: the filter language, ranking and summaries, table rendering and export."""
