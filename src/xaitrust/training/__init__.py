"""Training of xaitrust classifiers: the trainer with resumable safetensors checkpoints, the augmentations the papers
compare (FPA, random erasing, flip), degraded models and labels for sanity checks, k-fold cross-training, and cached
ready-trained models."""

from .augment import augment_batch, feature_perturbation, horizontal_flip, random_erasing
from .checkpoint import load_metadata, load_model, save_checkpoint
from .config import FPA_LARGE_IMAGES, TrainConfig
from .degrade import parameterized_layers, permute_labels, randomize_weights, reinitialize_layers, shuffle_labels
from .jobs import Runner, SequentialRunner, Task, TrainingJob, run_jobs
from .kfold import KFoldPlan, KFoldResult, load_k_fold, plan_k_fold, train_k_fold, train_k_folds
from .pretrained import PROFILES, default_cache_dir, get_trained_model, train_on_dataset
from .trainer import TrainResult, evaluate_accuracy, train_model

__all__ = [
    "FPA_LARGE_IMAGES",
    "KFoldPlan",
    "KFoldResult",
    "PROFILES",
    "Runner",
    "SequentialRunner",
    "Task",
    "TrainConfig",
    "TrainResult",
    "TrainingJob",
    "augment_batch",
    "default_cache_dir",
    "evaluate_accuracy",
    "feature_perturbation",
    "get_trained_model",
    "horizontal_flip",
    "load_k_fold",
    "load_metadata",
    "load_model",
    "parameterized_layers",
    "random_erasing",
    "randomize_weights",
    "reinitialize_layers",
    "run_jobs",
    "save_checkpoint",
    "shuffle_labels",
    "permute_labels",
    "plan_k_fold",
    "train_k_fold",
    "train_k_folds",
    "train_model",
    "train_on_dataset",
]
