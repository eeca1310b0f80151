"""The model-script API of SPEC 4: Versions, Model, DataLoader."""
import pytest

from mlpipeline.helper import DataLoader, Model
from mlpipeline.utils import ExecutionModeKeys, ModeKeys, Versions, version_parameters


class Loader(DataLoader):
    pass


def test_positional_defaults_as_in_the_original_readme():
    loader = Loader()
    versions = Versions(0.01, loader, 32, 5)
    version = versions.addV("v1")
    assert version[version_parameters.LEARNING_RATE] == 0.01
    assert version[version_parameters.DATALOADER] is loader
    assert version[version_parameters.BATCH_SIZE] == 32
    assert version[version_parameters.EPOC_COUNT] == 5
    assert version[version_parameters.NAME] == "v1"
    assert version.batch_size == 32  # attribute access too


def test_addV_overrides_defaults_and_takes_custom_parameters_in_every_spelling():
    versions = Versions(learning_rate=0.1, dataloader=Loader(), batch_size=8, epoc_count=1)
    version = versions.addV(
        "v",
        batch_size=16,
        learning_rate=0.5,
        custom_paramters={"depth": 3},
        custom_parameters={"width": 64},
        dropout=0.2,
    )
    assert (version["batch_size"], version["learning_rate"]) == (16, 0.5)
    assert (version["depth"], version["width"], version["dropout"]) == (3, 64, 0.2)


def test_duplicate_version_name_is_a_value_error():
    versions = Versions(0.1, Loader(), 1, 1)
    versions.addV("same")
    with pytest.raises(ValueError, match="'same' is defined twice"):
        versions.addV("same")


def test_version_names_cannot_hold_the_queue_separator():
    with pytest.raises(ValueError, match="':'"):
        Versions(0.1, Loader(), 1, 1).addV("a:b")


def test_getVersion_of_an_unknown_name_lists_the_known_ones():
    versions = Versions(0.1, Loader(), 1, 1)
    versions.addV("alpha")
    versions.addV("beta")
    with pytest.raises(ValueError, match="'gamma'.*'alpha', 'beta'"):
        versions.getVersion("gamma")


def test_versions_run_in_declaration_order_unless_order_says_otherwise():
    versions = Versions(0.1, Loader(), 1, 1)
    for name in ["c", "a", "b"]:
        versions.addV(name)
    assert versions.get_version_names() == ["c", "a", "b"]
    versions.addV("first", order=-1)
    versions.addV("middle", order=1)  # ties with "a" (declared second): declaration breaks the tie
    assert versions.get_version_names() == ["first", "c", "a", "middle", "b"]


def test_missing_required_parameters_are_named():
    versions = Versions(0.1, None)
    version = versions.addV("v", epoc_count=1)
    assert version.missing_required() == ["dataloader", "batch_size"]


def test_rangeOnParameters_adds_the_grid_product():
    loader = Loader()
    versions = Versions(0.1, loader, 10, 1)
    names = versions.rangeOnParameters(
        combining_parameters=[version_parameters.LEARNING_RATE, "width"],
        parameters={version_parameters.LEARNING_RATE: [0.1, 0.01], "width": [8, 16], "batch_size": 100, "extra": "x"},
    )
    assert names == [
        "learning_rate=0.1,width=8",
        "learning_rate=0.1,width=16",
        "learning_rate=0.01,width=8",
        "learning_rate=0.01,width=16",
    ]
    grid = [(versions.getVersion(n)["learning_rate"], versions.getVersion(n)["width"]) for n in names]
    assert grid == [(0.1, 8), (0.1, 16), (0.01, 8), (0.01, 16)]
    for name in names:
        version = versions.getVersion(name)
        assert version["batch_size"] == 100 and version["extra"] == "x"
        assert version["dataloader"] is loader and version["epoc_count"] == 1
    assert versions.get_version_names() == names


def test_rangeOnParameters_with_names_and_a_single_value():
    versions = Versions(0.1, Loader(), 10, 1)
    assert versions.rangeOnParameters(names=["only"], combining_parameters=["batch_size"], parameters={"batch_size": 5}) == [
        "only"
    ]
    assert versions.getVersion("only")["batch_size"] == 5
    with pytest.raises(ValueError, match="2 names given for 3 combinations"):
        versions.rangeOnParameters(names=["a", "b"], combining_parameters=["x"], parameters={"x": [1, 2, 3]})
    with pytest.raises(ValueError, match="'y' has no values"):
        versions.rangeOnParameters(combining_parameters=["y"], parameters={})


def test_model_needs_versions():
    with pytest.raises(ValueError, match="Versions object"):
        Model({"not": "versions"})
    model = Model(Versions(0.1, Loader(), 1, 1), allow_delete_model_dir=True, reset_steps=True)
    assert model.allow_delete_model_dir and model.reset_steps
    assert model.get_trained_step_count() is None


def test_summaries_in_both_spellings_even_without_super_init():
    class Bare(DataLoader):
        def __init__(self):
            pass  # the original's base __init__ did nothing; scripts often skip it

    loader = Bare()
    loader.add_to_summery("one")
    loader.add_to_summary("two")
    assert loader.summery == "one\ntwo\n" == loader.summary
    assert Bare.summery == ""  # another instance starts empty


def test_mode_keys_have_the_original_names():
    assert ExecutionModeKeys.TRAIN != ExecutionModeKeys.TEST
    assert (ModeKeys.TRAIN, ModeKeys.PREDICT) == ("Train", "Predict")
    # The original asked for the evaluation input with ExecutionModeKeys.TEST.
    assert ModeKeys.EVALUATE == ExecutionModeKeys.TEST == "Test"
