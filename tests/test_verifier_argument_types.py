"""Every registered verifier refuses a response or answer of the wrong type with one clear TypeError."""
from __future__ import annotations

import pytest

from reasonrl import verifiers
from reasonrl.verifiers.base import _REGISTRY, Verifier, register


@pytest.mark.parametrize("name", verifiers.names())
@pytest.mark.parametrize("response", [18, 1.5, b"18", ["18"]])
def test_a_response_that_is_not_a_string_names_the_argument(name, response):
    verifier = verifiers.get(name)
    with pytest.raises(TypeError, match=rf"verifier '.*': verify\(response, answer\): argument 'response' must be str, got {type(response).__name__}"):
        verifier.verify(response, "18")


@pytest.mark.parametrize("name", verifiers.names())
@pytest.mark.parametrize("answer", [b"18", bytearray(b"18"), {1, 2}])
def test_an_answer_that_is_no_json_value_names_the_argument(name, answer):
    with pytest.raises(TypeError, match=rf"argument 'answer' must be .*, got {type(answer).__name__}"):
        verifiers.get(name).verify("18", answer)


def test_bytes_get_a_hint_to_decode():
    with pytest.raises(TypeError, match=r"decode bytes to str first"):
        verifiers.get("gsm8k").verify(b"18", "18")


def test_kk_takes_an_object_or_its_json_text_only():
    with pytest.raises(TypeError, match=r"verifier 'kk'.*argument 'answer' must be str or dict, got list"):
        verifiers.get("kk").verify("Alice is a knight", [True])


@pytest.fixture
def user_verifier_name():
    yield "test-argument-types-user"
    _REGISTRY.pop("test-argument-types-user", None)  # other tests walk the registry


def test_a_users_verifier_gets_the_check_too(user_verifier_name):
    @register("test-argument-types-user")
    class Echo(Verifier):
        answer_types = (str,)

        def verify(self, response, answer):
            return response == answer

    echo = verifiers.get("test-argument-types-user")
    assert echo.verify("a", "a") is True
    assert echo.verify(response="a", answer="a") is True
    with pytest.raises(TypeError, match="argument 'answer' must be str, got int"):
        echo.verify("a", answer=1)
    with pytest.raises(TypeError, match="argument 'response' must be str, got int"):
        echo.verify(1, "a")


def test_a_missing_response_is_still_read_as_empty():
    # Verifiers have read None as no response; that stays so.
    assert verifiers.get("gsm8k").verify(None, "18").reason == "no_answer"
