import pytest

from recsys_lab.data.schema import Feature, FeatureKind, FeatureRole, Schema


def make_schema() -> Schema:
    return Schema(
        features=(
            Feature("user", "categorical", 100, "user"),
            Feature("ad", "categorical", 50, "item"),
            Feature("price", "numeric"),
            Feature("hist_item", "sequence", 50),
        ),
        labels=("click", "conversion"),
        action_names=("exposure", "click"),
    )


def test_views_keep_schema_order():
    s = make_schema()
    assert [f.name for f in s.categorical] == ["user", "ad"]
    assert [f.name for f in s.numeric] == ["price"]
    assert [f.name for f in s.sequence] == ["hist_item"]
    assert s.vocab_sizes == [100, 50]
    assert s.categorical_index("ad") == 1
    assert s.user_feature().name == "user"
    assert s["price"].kind is FeatureKind.NUMERIC
    assert s["ad"].role is FeatureRole.ITEM


def test_roundtrip_through_json(tmp_path):
    s = make_schema()
    s.save(tmp_path / "schema.json")
    assert Schema.load(tmp_path / "schema.json") == s


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "c", "kind": "categorical", "vocab_size": 1}, "vocab_size >= 2"),
        ({"name": "x", "kind": "numeric", "vocab_size": 3}, "must not have a vocab_size"),
        ({"name": "", "kind": "numeric"}, "non-empty"),
    ],
)
def test_bad_features_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Feature(**kwargs)


def test_bad_kind_is_rejected():
    with pytest.raises(ValueError):
        Feature("x", "ordinal")


def test_duplicate_names_and_missing_click_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Schema((Feature("a", "numeric"), Feature("a", "numeric")))
    with pytest.raises(ValueError, match="click"):
        Schema((Feature("a", "numeric"),), labels=("conversion",))


def test_unknown_feature_lookup_names_the_known_ones():
    with pytest.raises(KeyError, match="user"):
        make_schema()["nope"]
