import re

import numpy as np
import pytest

from wine_classifier import Split, load_split
from wine_classifier.data import dataset_digest

N_SAMPLES = 178
N_FEATURES = 13


def test_split_shapes_default():
    split = load_split()
    assert isinstance(split, Split)
    assert split.X_train.shape == (133, N_FEATURES)
    assert split.X_test.shape == (45, N_FEATURES)
    assert split.y_train.shape == (133,)
    assert split.y_test.shape == (45,)
    assert len(split.feature_names) == N_FEATURES
    assert split.target_names == ("class_0", "class_1", "class_2")
    assert all(isinstance(name, str) for name in split.feature_names)


@pytest.mark.parametrize("test_size", [0.1, 0.3, 0.5])
def test_split_sizes_follow_test_size(test_size):
    split = load_split(test_size=test_size)
    assert len(split.y_train) + len(split.y_test) == N_SAMPLES
    assert len(split.y_test) == int(np.ceil(test_size * N_SAMPLES))


def test_split_is_stratified():
    split = load_split(test_size=0.25, seed=7)
    full = np.concatenate([split.y_train, split.y_test])
    full_frac = np.bincount(full) / len(full)
    test_frac = np.bincount(split.y_test, minlength=3) / len(split.y_test)
    train_frac = np.bincount(split.y_train, minlength=3) / len(split.y_train)
    # Stratification keeps each class share within one sample of the full data.
    assert np.all(np.abs(test_frac - full_frac) <= 1 / len(split.y_test))
    assert np.all(np.abs(train_frac - full_frac) <= 1 / len(split.y_train))


def test_split_is_fixed_for_a_seed_and_differs_across_seeds():
    a = load_split(seed=1)
    b = load_split(seed=1)
    c = load_split(seed=2)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_test, c.X_test)


def test_split_partitions_the_data():
    split = load_split()
    rows = np.concatenate([split.X_train, split.X_test])
    assert len(np.unique(rows, axis=0)) == N_SAMPLES


def test_digest_format_and_stability():
    a = load_split()
    b = load_split()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a.digest)
    assert a.digest == b.digest


def test_digest_is_of_full_data_set_not_the_split():
    base = load_split().digest
    assert load_split(seed=123).digest == base
    assert load_split(test_size=0.5).digest == base


def test_digest_ignores_memory_layout_and_dtype():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    names = ("a", "b", "c")
    ref = dataset_digest(X, y, names)
    assert dataset_digest(np.asfortranarray(X), y.astype(np.int32), names) == ref
    assert dataset_digest(X.astype(">f8"), y, names) == ref


def test_digest_changes_with_content():
    X = np.arange(12, dtype=float).reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    ref = dataset_digest(X, y, ("a", "b", "c"))
    X2 = X.copy()
    X2[0, 0] += 1e-9
    assert dataset_digest(X2, y, ("a", "b", "c")) != ref
    assert dataset_digest(X, y[::-1], ("a", "b", "c")) != ref
    assert dataset_digest(X, y, ("a", "b", "d")) != ref
    assert dataset_digest(X.reshape(3, 4), np.array([0, 1, 0]), ("a",)) != ref


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.2, 1.5, float("nan"), "0.2", None, True])
def test_bad_test_size(bad):
    with pytest.raises(ValueError, match="test_size must be a float strictly between 0 and 1"):
        load_split(test_size=bad)


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "1", None])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        load_split(seed=bad)


def test_split_is_frozen():
    split = load_split()
    with pytest.raises(AttributeError):
        split.digest = "sha256:0"
