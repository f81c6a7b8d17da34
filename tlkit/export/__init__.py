"""Export: the serving graph, versions, verification in a child process, TFLite."""
