"""Evaluation data: labelled image sets on disk and robust decoding."""
from zoo.data.dataset import Dataset, Sample, check_labels, open_dataset, stratified_subset
from zoo.data.decode import load_rgb

__all__ = ["Dataset", "Sample", "check_labels", "load_rgb", "open_dataset", "stratified_subset"]
