from mmkg.graph import ids


def test_ids_are_content_derived_and_stable() -> None:
    assert ids.image_id(b"abc") == ids.image_id(b"abc") != ids.image_id(b"abd")
    assert ids.text_id("rec:a:1", "caption", "A dog") != ids.text_id("rec:a:2", "caption", "A dog")


def test_entity_names_are_normalised_not_transliterated() -> None:
    assert ids.entity_id("  Navy   BLUE ") == "ent:navy blue"
    assert ids.entity_id("狗") == "ent:狗"
    assert ids.normalize_name("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"
