from server.auth.passwords import hash_password, password_problem, verify_password


def test_argon2id_hash_verifies_only_the_right_password() -> None:
    hashed = hash_password("một mật khẩu dài")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "một mật khẩu dài")
    assert not verify_password(hashed, "một mật khẩu dai")
    assert hash_password("một mật khẩu dài") != hashed  # salted


def test_missing_or_corrupt_hash_never_verifies() -> None:
    assert not verify_password(None, "bridgecast-timing-equaliser")
    assert not verify_password("not-a-hash", "anything")


def test_password_rules() -> None:
    assert password_problem("short") == "password_too_short"
    assert password_problem("x" * 300) == "password_too_long"
    assert password_problem("long enough") is None
