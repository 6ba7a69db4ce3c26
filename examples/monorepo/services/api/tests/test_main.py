from common.money import format_cents


def test_format():
    assert format_cents(1999) == "19.99"
