from gatesample import bump, parse


def test_parse_accepts_a_leading_v():
    assert parse("v1.2.3") == (1, 2, 3)


def test_bump_resets_the_lower_parts():
    assert bump("1.2.3", "minor") == "1.3.0"
