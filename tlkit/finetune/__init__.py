"""Finetuning: run directories, heads, training and the pipeline that wires them."""
