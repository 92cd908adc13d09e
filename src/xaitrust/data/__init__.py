"""Datasets of xaitrust: Fashion-MNIST, scikit-learn digits, synthetic shapes with ground-truth masks, the user's own
image folders and ``.npz`` files, and the seeded stratified splits (k folds, calibration hold-out) built on them."""

from .dataset import ImageDataset
from .registry import DatasetInfo, available_datasets, load_dataset
from .splits import calibration_split, holdout_split, stratified_kfold, stratified_sample

__all__ = [
    "DatasetInfo",
    "ImageDataset",
    "available_datasets",
    "calibration_split",
    "holdout_split",
    "load_dataset",
    "stratified_kfold",
    "stratified_sample",
]
